/**
 * One line of fail2ban's log → what it says, as far as the monitor cares. Pure; never throws.
 *
 * Untrusted input: the file is written by fail2ban, but anything that reaches the same file or journal
 * unit can write a line too. So a line counts only when it has fail2ban's exact shape, and a ban or
 * unban only when fail2ban's `actions` logger wrote it at NOTICE (WARNING in 0.8) where the line says
 * so. The ip is returned exactly as logged: fail2ban logs whatever `banip` was given (`not-an-ip`,
 * `0.0.0.0` for `0.0.0.0/0`, `1.0.0.0/8`), so the caller must validate it before use.
 *
 * Shapes understood (see test/fail2ban/log-line.test.ts for one real line of each):
 *   file target    `2026-11-29 00:43:01,986 fail2ban.actions        [18776]: NOTICE  [sshd] Ban 1.2.3.4`
 *                  (0.9.1+: name padded to 24, level to 7; 0.8: name padded to 16, `[pid]` from 0.8.14,
 *                  level padded to 6; `padding=0` drops the padding)
 *   syslog target  `fail2ban.actions[123]: NOTICE [sshd] Ban 1.2.3.4` after a syslog header:
 *                  `Nov 29 00:43:01 host `, `2026-11-29T00:43:01.986+01:00 host ` (rsyslog's RFC 3339
 *                  file format), RFC 5424 `<29>1 2026-… host fail2ban.actions 123 - - NOTICE …`, or a raw
 *                  datagram `<29>fail2ban.actions[123]: …`
 *   stdout/journal `… host fail2ban-server[123]: fail2ban.actions        [123]: NOTICE  [sshd] Ban 1.2.3.4`
 *                  (logtarget STDOUT/SYSOUT captured by systemd), and `… host fail2ban[123]: [sshd] Ban
 *                  1.2.3.4` (logtarget SYSTEMD-JOURNAL as journalctl or rsyslog's imjournal print it)
 */

/** Lines fail2ban writes about a ban that are not a new ban or a real unban. */
export type IgnoredKind =
  | "restore-ban" // `Restore Ban ip`: re-applied from fail2ban's db after a (re)start (0.10+)
  | "reban" // `Reban ip[, action 'x']`: consistency repair (0.10.5+)
  | "increase-ban" // `Increase Ban ip (…)`: bantime.increment prolongs an existing ban
  | "already-banned" // `ip already banned`
  | "repeal-ban" // `Repeal Ban ip`: what 1.1.1+ logs instead of `Unban` while stopping
  | "found" // `Found ip - time`, `Found ip, bad - …`: a failure, not a ban
  | "attempt" // `Attempt ip - time`: a failure added by `set <jail> attempt`
  | "ignore" // `Ignore ip by …`: failure ignored by ignoreip/ignoreself
  | "flush" // `Flush ticket(s) with <action>`: actionflush while stopping a jail
  | "other"; // any other line fail2ban writes (INFO chatter, errors, `Start Fail2ban` on target change)

interface Common {
  /** fail2ban-server's pid when the line carries it (it changes on every restart). */
  pid?: number;
  /** The whole line as read (for logs; escape it with `untrusted()` before printing). */
  raw: string;
}

export type LogRecord = Common &
  (
    | { type: "ban" | "unban"; jail: string; ip: string }
    | { type: "ignored"; what: IgnoredKind; jail?: string }
    /** `Starting Fail2ban v1.0.2`: a new server process. */
    | { type: "start"; version: string }
    /** `Shutdown in progress...` (0.10+), `Stopping all jails` (also `reload --restart`), `Exiting Fail2ban`. */
    | { type: "shutdown"; phase: "begin" | "stop-all-jails" | "exit" }
    /** `Reload jail x`, `Reload jail 'x'`, `Restart jail 'x' (reason: …)`; no jail: `Reload all jails`. */
    | { type: "reload"; jail?: string }
    /** `Reload finished.` */
    | { type: "reload-finished" }
    | { type: "jail-started"; jail: string }
    | { type: "jail-stopped"; jail: string }
    /** `Jail 'x' reloaded`: a reload without restart is over for that jail. */
    | { type: "jail-reloaded"; jail: string }
  );

/** Longer lines are not fail2ban's ban lines; they are refused before any regex runs. */
export const MAX_LINE_LENGTH = 8192;

/** Who wrote a message and at which level, when that is known from outside the message (journal). */
export interface MessageSource {
  /** Python logger name, e.g. `fail2ban.actions`. */
  logger?: string;
  /** Level name as fail2ban writes it: NOTICE, WARNING, INFO… */
  level?: string;
  pid?: number;
}

// `2026-11-29 00:43:01,986` (asctime) or ISO `2026-11-29T00:43:01.986+01:00`
const TIME = String.raw`\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?`;
const FILE_PREFIX = new RegExp(`^${TIME} (?=fail2ban)`);
// syslog headers: `Nov 29 00:43:01 host `, `Nov  9 00:43:01.123456 host `, `2026-11-29T00:43:01+01:00 host `
const BSD_HEADER = /^[A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d(?:\.\d{1,9})? \S+ /;
const ISO_HEADER = new RegExp(`^${TIME} \\S+ `);
// RFC 5424: `<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID SD MSG`, as rsyslog's SyslogProtocol23Format writes
const RFC5424 =
  /^(?:<\d{1,3}>)?1 \S+ \S+ (\S+) (\S+) \S+ (?:-|(?:\[(?:[^\]"\\]|\\.|"(?:[^"\\]|\\.)*")*\])+)(?: (.*))?$/;
const PRI = /^<\d{1,3}>/;
// the process tag of systemd-captured output: `fail2ban-server[123]: ` or `fail2ban[123]: `
const SERVER_TAG = /^(fail2ban-server|fail2ban)(?:\[(\d{1,10})\])?: (.*)$/;
// fail2ban's own record: `fail2ban.actions        [18776]: NOTICE  msg`, `fail2ban.actions: WARNING msg`
const RECORD = /^fail2ban(?:\.([A-Za-z0-9_.]{1,64}))? *(?:\[(\d{1,10})\])?: ([A-Z]{1,16}) +(.*)$/;

const BAN_LEVELS = new Set(["NOTICE", "WARNING"]);
const BAN_LOGGER = "actions";

// fail2ban's own file handler: Python's asctime, then the logger name, nothing in between.
const OWN_FILE_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} fail2ban[. [:]/;

/**
 * True when a line has the shape fail2ban's own file handler writes; false for every syslog and
 * journal shape above. Threat: any local user can put a syslog line with fail2ban's tag into
 * syslog (`logger -t fail2ban.actions 'NOTICE [sshd] Ban 192.0.2.1'`), so a file that syslog
 * writes cannot tell fail2ban's lines from forged ones; fail2ban's own root-owned file can.
 */
export function isOwnFileLine(line: string): boolean {
  return OWN_FILE_LINE.test(line);
}

/** Parses one line of a fail2ban log file (any version and prefix above); undefined if it is not one. */
export function parseLogLine(line: string): LogRecord | undefined {
  try {
    if (line.length > MAX_LINE_LENGTH) return undefined;
    const text = line.replace(/[\r\n\0]+$/, "");
    return parseAfterHeader(stripHeader(text), text);
  } catch {
    return undefined;
  }
}

/**
 * Parses a message whose source is known from elsewhere (a journal entry of fail2ban's
 * SYSTEMD-JOURNAL target: `[sshd] Ban 1.2.3.4`, logger and level in journal fields).
 */
export function parseMessage(message: string, source: MessageSource = {}): LogRecord | undefined {
  try {
    if (message.length > MAX_LINE_LENGTH) return undefined;
    const logger = source.logger === undefined ? undefined : source.logger.replace(/^fail2ban\.?/, "");
    const text = message.replace(/[\r\n\0]+$/, "");
    return interpretMessage(text, logger, source.level, source.pid, text);
  } catch {
    return undefined;
  }
}

function stripHeader(text: string): string {
  if (FILE_PREFIX.test(text)) return text.replace(FILE_PREFIX, "");
  const header = BSD_HEADER.exec(text) ?? ISO_HEADER.exec(text);
  if (header) return text.slice(header[0].length);
  const rfc = RFC5424.exec(text);
  if (rfc) {
    const [, app, procid, msg = ""] = rfc;
    return procid === "-" ? `${app}: ${msg}` : `${app}[${procid}]: ${msg}`;
  }
  const pri = PRI.exec(text);
  if (pri) return text.slice(pri[0].length);
  return text;
}

function parseAfterHeader(body: string, raw: string): LogRecord | undefined {
  const tagged = SERVER_TAG.exec(body);
  if (tagged) {
    const [, ident, pidText, inner = ""] = tagged;
    const pid = pidText === undefined ? undefined : Number(pidText);
    const record = parseRecord(inner.replace(FILE_PREFIX, ""), raw);
    if (record) return record;
    // Only the journal handler (identifier `fail2ban`) writes bare messages; fail2ban-server's own
    // stdout always carries the record prefix.
    return ident === "fail2ban" ? interpretMessage(inner, undefined, undefined, pid, raw) : undefined;
  }
  return parseRecord(body, raw);
}

function parseRecord(body: string, raw: string): LogRecord | undefined {
  const m = RECORD.exec(body);
  if (!m) return undefined;
  const [, logger = "", pidText, level, message = ""] = m;
  return interpretMessage(message, logger, level, pidText === undefined ? undefined : Number(pidText), raw);
}

// Greedy jail: jail names may contain `]` and blanks (`[br]acket] Ban 1.2.3.4`); the ip is the last
// token and never contains a blank, so the greedy group ends at the right `] `.
const BAN = /^\[(.+)\] (Ban|Unban|Restore Ban|Repeal Ban) (\S{1,100})$/;
const BAN_LIKE = /^\[.*\] (?:Ban|Unban|Restore Ban|Repeal Ban)(?: |$)/;
const ALREADY = /^\[(.+)\] \S{1,100} already banned$/;
const JAIL_EVENT = /^\[(.+)\] (Found|Attempt|Ignore|Increase Ban|Reban|Flush ticket\(s\) with) /;
const JAIL_QUOTED = `(?:'(.+)'|"(.+)")`;
const JAIL_STATE = new RegExp(`^Jail ${JAIL_QUOTED} (started|stopped|reloaded)$`);
const RELOAD_JAIL = new RegExp(`^Reload jail (?:${JAIL_QUOTED}|(.+))$`);
// a prefix match with a lazy jail: the reason is free text, and `(.+)…(.*)$` would be quadratic
const RESTART_JAIL = /^Restart jail (?:'(.+?)'|"(.+?)") \(reason: /;
const STARTING = /^Starting Fail2ban v(\S{1,32})$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
const CONTROL = /[\u0000-\u001f\u007f]/;

const JAIL_EVENTS: Record<string, IgnoredKind> = {
  Found: "found",
  Attempt: "attempt",
  Ignore: "ignore",
  "Increase Ban": "increase-ban",
  Reban: "reban",
  "Flush ticket(s) with": "flush",
};

function interpretMessage(
  message: string,
  logger: string | undefined,
  level: string | undefined,
  pid: number | undefined,
  raw: string,
): LogRecord | undefined {
  const base: Common = pid === undefined ? { raw } : { pid, raw };
  if (message.startsWith("[")) {
    const ban = BAN.exec(message);
    if (ban) {
      const [, jail = "", action, ip = ""] = ban;
      if (!validJail(jail)) return undefined;
      if (action === "Restore Ban") return { ...base, type: "ignored", what: "restore-ban", jail };
      if (action === "Repeal Ban") return { ...base, type: "ignored", what: "repeal-ban", jail };
      // Only fail2ban's actions logger writes these, at NOTICE (WARNING in 0.8); a line that says
      // otherwise was not written by it.
      if (logger !== undefined && logger !== BAN_LOGGER) return undefined;
      if (level !== undefined && !BAN_LEVELS.has(level)) return undefined;
      return { ...base, type: action === "Ban" ? "ban" : "unban", jail, ip };
    }
    // `Ban ` (empty ip) or `Ban 1.2.3.4 5.6.7.8`: fail2ban logs whatever `banip` got; refuse it.
    if (BAN_LIKE.test(message)) return undefined;
    const already = ALREADY.exec(message);
    if (already) return jailIgnored(base, "already-banned", already[1]);
    const event = JAIL_EVENT.exec(message);
    if (event) return jailIgnored(base, JAIL_EVENTS[event[2] ?? ""] ?? "other", event[1]);
    return { ...base, type: "ignored", what: "other" };
  }
  const state = JAIL_STATE.exec(message);
  if (state) {
    const jail = state[1] ?? state[2] ?? "";
    if (!validJail(jail)) return undefined;
    const type =
      state[3] === "started" ? "jail-started" : state[3] === "stopped" ? "jail-stopped" : "jail-reloaded";
    return { ...base, type, jail };
  }
  if (message === "Shutdown in progress...") return { ...base, type: "shutdown", phase: "begin" };
  if (message === "Stopping all jails") return { ...base, type: "shutdown", phase: "stop-all-jails" };
  if (message === "Exiting Fail2ban") return { ...base, type: "shutdown", phase: "exit" };
  if (message === "Reload all jails") return { ...base, type: "reload" };
  if (message === "Reload finished.") return { ...base, type: "reload-finished" };
  const reload = RELOAD_JAIL.exec(message) ?? RESTART_JAIL.exec(message);
  if (reload) {
    const jail = reload[1] ?? reload[2] ?? reload[3] ?? "";
    return validJail(jail) ? { ...base, type: "reload", jail } : undefined;
  }
  const starting = STARTING.exec(message);
  if (starting) return { ...base, type: "start", version: starting[1] ?? "" };
  return { ...base, type: "ignored", what: "other" };
}

function jailIgnored(base: Common, what: IgnoredKind, jail: string | undefined): LogRecord {
  return jail !== undefined && validJail(jail)
    ? { ...base, type: "ignored", what, jail }
    : { ...base, type: "ignored", what };
}

function validJail(jail: string): boolean {
  return jail.length > 0 && jail.length <= 255 && !CONTROL.test(jail);
}
