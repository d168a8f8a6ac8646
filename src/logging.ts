import { createRequire } from "node:module";
import { type Logger, pino } from "pino";
import { escapeText } from "./toolkit/escape.js";

export type { Logger } from "pino";

export interface LoggerOptions {
  level: string;
  /** Pretty, human-readable lines (for a terminal); JSON otherwise. */
  pretty: boolean;
  /** Append JSON lines to this file instead of stdout; reopened on SIGHUP via `reopen()`. */
  file?: string;
  /**
   * Stdout is a journald stream (see `isJournalStream`): each JSON line starts with its syslog
   * priority, `<4>` for a warning, which journald strips and records as PRIORITY, so that
   * `journalctl -p warning` finds warnings (systemd's SyslogLevelPrefix, on by default).
   */
  journal?: boolean;
}

export interface ProcessLogger {
  logger: Logger;
  reopen(): void;
  flush(): void;
}

/** Secrets never reach a log line, whatever a caller passes. */
const REDACT = [
  "secret",
  "*.secret",
  "curveSecret",
  "*.curveSecret",
  "signSecret",
  "*.signSecret",
  "password",
];

/** One root logger per process; components use `logger.child({ component })`. */
export function createLogger(name: string, options: LoggerOptions): ProcessLogger {
  const base = { level: options.level, name, redact: { paths: REDACT, censor: "[redacted]" } };
  if (options.file) {
    const destination = pino.destination({ dest: options.file, append: true, sync: true, mkdir: true });
    return {
      logger: pino(base, destination),
      reopen: () => destination.reopen(),
      flush: () => destination.flushSync(),
    };
  }
  if (options.pretty && prettyInstalled()) {
    const transport = pino.transport({
      target: "pino-pretty",
      options: { colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" },
    });
    return { logger: pino(base, transport), reopen: () => {}, flush: () => {} };
  }
  const destination = pino.destination({ dest: 1, sync: true });
  const hooks = options.journal ? { hooks: { streamWrite: withPriority } } : {};
  return {
    logger: pino({ ...base, ...hooks }, destination),
    reopen: () => {},
    flush: () => destination.flushSync(),
  };
}

/** pino's levels as syslog priorities (sd-daemon(3)): fatal crit, error err, warn warning, info info. */
export function syslogPriority(level: number): number {
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

/** pino writes the numeric level first (no level formatter is configured): `{"level":40,…`. */
function withPriority(line: string): string {
  const level = /^\{"level":(\d+)/.exec(line)?.[1];
  return level === undefined ? line : `<${syslogPriority(Number(level))}>${line}`;
}

/**
 * Whether stdout is connected to journald: systemd sets JOURNAL_STREAM to the `device:inode` of
 * the stream it hands a service, and a child that inherits the variable with its stdout redirected
 * (to a file, a pipe) must not prefix its lines, so the pair is compared (systemd.exec(5)).
 */
export function isJournalStream(
  env: Readonly<Record<string, string | undefined>>,
  stdout: { dev: number; ino: number } | undefined,
): boolean {
  const match = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? "");
  return (
    match !== null &&
    stdout !== undefined &&
    Number(match[1]) === stdout.dev &&
    Number(match[2]) === stdout.ino
  );
}

/**
 * pino-pretty is an optional dependency (`npm install --omit=optional` leaves it out): without it a
 * terminal gets JSON lines too, instead of pino.transport throwing "unable to determine transport
 * target" and the daemon exiting. Resolved from this file, as the transport resolves its target.
 */
function prettyInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve("pino-pretty");
    return true;
  } catch {
    return false;
  }
}

/** Escapes and truncates an untrusted value before it goes into a log line (bytes read as latin1). */
export function untrusted(value: unknown, max = 200): string {
  const text =
    typeof value === "string" ? value : Buffer.isBuffer(value) ? value.toString("latin1") : String(value);
  return escapeText(text, max);
}
