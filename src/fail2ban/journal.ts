import { type ChildProcess, spawn } from "node:child_process";
import { type Logger, untrusted } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { sleep } from "../toolkit/wake-up.js";
import { type LogRecord, parseLogLine, parseMessage } from "./log-line.js";

/** One journal entry of the fail2ban unit. */
export interface JournalLine {
  /** What the entry says, or undefined when it is not one of fail2ban's lines. */
  record: LogRecord | undefined;
  message: string;
  /** Journal cursor just after this entry: persist it with what was derived from the entry. */
  cursor: string;
}

export interface JournalTailerOptions {
  /** The systemd unit fail2ban runs in, e.g. `fail2ban.service`. */
  unit: string;
  /** Resume after this cursor; without it, start with entries written from now on. */
  cursor?: string;
  command?: string;
  /** Arguments put before journalctl's own (tests run a script that stands in for journalctl). */
  commandArgs?: readonly string[];
  /** Wait before restarting journalctl after it exits; doubled while it keeps failing, up to 30 s. */
  restartDelayMs?: number;
  signal?: AbortSignal;
  logger: Logger;
  metrics?: Metrics;
}

const MAX_JSON_LINE = 64 * 1024;
const MAX_RESTART_DELAY_MS = 30_000;
/** syslog priority → the level name fail2ban would have written (python-systemd maps NOTICE to 4). */
const LEVELS = ["CRITICAL", "CRITICAL", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"];

/** journalctl's arguments: follow the unit as JSON, after the cursor or from now. Never a shell. */
export function journalctlArgs(unit: string, cursor?: string): string[] {
  const from = cursor === undefined ? ["--since", "now"] : ["--after-cursor", cursor];
  return ["--follow", "--output", "json", "--quiet", "--no-pager", "--unit", unit, ...from];
}

/**
 * Parses one line of `journalctl -o json`. Fields used: `__CURSOR`, `MESSAGE` (a string, or an array
 * of bytes when it is not valid UTF-8), `SYSLOG_IDENTIFIER`, `LOGGER`, `PRIORITY`, `_PID`,
 * `SYSLOG_PID`. undefined only when the line is not a journal entry with a cursor.
 *
 * fail2ban reaches the journal three ways, told apart by SYSLOG_IDENTIFIER:
 *   `fail2ban`           logtarget SYSTEMD-JOURNAL: MESSAGE is the bare `[sshd] Ban 1.2.3.4`, the
 *                        logger and level are the LOGGER and PRIORITY fields
 *   `fail2ban.actions`…  logtarget SYSLOG with journald on /dev/log: MESSAGE is `NOTICE [sshd] Ban …`
 *   anything else        stdout (logtarget STDOUT/SYSOUT): MESSAGE is a whole log line
 */
export function parseJournalEntry(json: string): JournalLine | undefined {
  let entry: unknown;
  try {
    entry = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) return undefined;
  const fields = entry as Record<string, unknown>;
  const cursor = fields.__CURSOR;
  if (typeof cursor !== "string" || cursor.length === 0) return undefined;
  const message = fieldText(fields.MESSAGE);
  if (message === undefined) return { record: undefined, message: "", cursor };
  const ident = fieldText(fields.SYSLOG_IDENTIFIER);
  const pid = fieldInt(fields._PID) ?? fieldInt(fields.SYSLOG_PID);
  let record: LogRecord | undefined;
  if (ident === "fail2ban") {
    const logger = fieldText(fields.LOGGER);
    const priority = fieldInt(fields.PRIORITY);
    const level = priority === undefined ? undefined : LEVELS[priority];
    record = parseMessage(message, {
      ...(logger === undefined ? {} : { logger }),
      ...(level === undefined ? {} : { level }),
      ...(pid === undefined ? {} : { pid }),
    });
  } else if (ident?.startsWith("fail2ban.")) {
    const tagPid = fieldInt(fields.SYSLOG_PID) ?? pid;
    record = parseLogLine(`${ident}${tagPid === undefined ? "" : `[${tagPid}]`}: ${message}`);
    if (record) record.raw = message;
  } else {
    record = parseLogLine(message);
  }
  return { record, message, cursor };
}

/**
 * Follows fail2ban's journal entries through `journalctl` (spawned with an argv array, no shell):
 * `for await (const { record, cursor } of tailer)`. When journalctl exits it is restarted after the
 * last cursor seen, so nothing is read twice or skipped; errors are logged, never thrown. `close()`
 * stops journalctl and ends the loop; it is idempotent.
 */
export class JournalTailer implements AsyncIterable<JournalLine> {
  private readonly unit: string;
  private readonly command: string;
  private readonly commandArgs: readonly string[];
  private readonly restartMs: number;
  private readonly metrics: Metrics | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly warnings: LimitedLog;
  private readonly onAbort = (): void => this.close();
  /** Aborted by close(): ends the wait before a restart, and the loop. */
  private readonly stop = new AbortController();
  private cursor: string | undefined;
  private child: ChildProcess | undefined;
  private iterator: AsyncGenerator<JournalLine> | undefined;

  constructor(options: JournalTailerOptions) {
    this.unit = options.unit;
    this.cursor = options.cursor;
    this.command = options.command ?? "journalctl";
    this.commandArgs = options.commandArgs ?? [];
    this.restartMs = Math.max(10, options.restartDelayMs ?? 1000);
    this.warnings = new LimitedLog(options.logger, new RateLimitedLog(60_000, 5));
    this.metrics = options.metrics;
    this.signal = options.signal;
    if (this.signal?.aborted) this.stop.abort();
    else this.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  [Symbol.asyncIterator](): AsyncGenerator<JournalLine> {
    this.iterator ??= this.run();
    return this.iterator;
  }

  private get closed(): boolean {
    return this.stop.signal.aborted;
  }

  close(): void {
    this.stop.abort();
    this.signal?.removeEventListener("abort", this.onAbort);
    this.child?.kill("SIGTERM");
  }

  private async *run(): AsyncGenerator<JournalLine> {
    let delay = this.restartMs;
    try {
      while (!this.closed) {
        const args = [...this.commandArgs, ...journalctlArgs(this.unit, this.cursor)];
        const child = spawn(this.command, args, { stdio: ["ignore", "pipe", "pipe"] });
        this.child = child;
        const exited = new Promise<string>((resolve) => {
          child.once("error", (error) => resolve(`failed: ${error.message}`));
          child.once("close", (code, signal) =>
            resolve(signal ? `killed by ${signal}` : `exited with ${code}`),
          );
        });
        child.stderr?.setEncoding("utf8");
        child.stderr?.on("data", (text: string) =>
          this.warn("stderr", "journalctl wrote to stderr", { text }),
        );
        let entries = 0;
        try {
          for await (const json of jsonLines(child, () => this.skipped())) {
            const line = parseJournalEntry(json);
            if (!line) {
              this.metrics?.inc("log_source_events_total", { event: "journal-malformed" });
              this.warn("malformed", "journal line is not a json entry with a cursor", { json });
              continue;
            }
            this.cursor = line.cursor;
            entries++;
            yield line;
            if (this.closed) return;
          }
        } catch (error) {
          this.warn("read", "reading journalctl's output failed", { error: String(error) });
        }
        child.kill("SIGTERM");
        const how = await exited;
        this.child = undefined;
        if (this.closed) return;
        delay = entries > 0 ? this.restartMs : Math.min(delay * 2, MAX_RESTART_DELAY_MS);
        this.metrics?.inc("log_source_events_total", { event: "journal-restart" });
        this.warn("exit", "journalctl stopped; restarting it", { how, inMs: delay, command: this.command });
        await sleep(delay, this.stop.signal);
      }
    } finally {
      this.close();
    }
  }

  private skipped(): void {
    this.metrics?.inc("log_source_events_total", { event: "overlong-line" });
    this.warn("overlong", "over-long journal line skipped", { max: MAX_JSON_LINE });
  }

  private warn(key: string, msg: string, fields: Record<string, unknown>): void {
    this.warnings.warn(
      key,
      () => ({
        unit: this.unit,
        ...Object.fromEntries(
          Object.entries(fields).map(([k, v]) => [k, typeof v === "string" ? untrusted(v) : v]),
        ),
      }),
      msg,
    );
  }
}

/** Lines of the child's stdout, each at most MAX_JSON_LINE bytes (longer ones skipped whole). */
async function* jsonLines(child: ChildProcess, onSkip: () => void): AsyncGenerator<string> {
  if (!child.stdout) return;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let skipping = false;
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, from)) {
      const piece = chunk.subarray(from, nl);
      from = nl + 1;
      if (skipping || pendingBytes + piece.length > MAX_JSON_LINE) {
        if (!skipping) onSkip();
        skipping = false;
      } else {
        const line = Buffer.concat([...pending, piece]).toString("utf8");
        if (line.length > 0) yield line;
      }
      pending = [];
      pendingBytes = 0;
    }
    const rest = chunk.subarray(from);
    if (skipping || rest.length === 0) continue;
    if (pendingBytes + rest.length > MAX_JSON_LINE) {
      onSkip();
      skipping = true;
      pending = [];
      pendingBytes = 0;
    } else {
      pending.push(Buffer.from(rest));
      pendingBytes += rest.length;
    }
  }
}

function fieldText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  // A field that is not valid UTF-8 comes as an array of byte values.
  if (Array.isArray(value) && value.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) {
    return Buffer.from(value as number[]).toString("utf8");
  }
  // A field that occurs several times in one entry comes as an array of values; fail2ban never does.
  return undefined;
}

function fieldInt(value: unknown): number | undefined {
  const text = fieldText(value);
  return text !== undefined && /^\d{1,10}$/.test(text) ? Number(text) : undefined;
}
