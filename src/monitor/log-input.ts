import { stat } from "node:fs/promises";
import type { MonitorConfig } from "../config/schema.js";
import { JournalTailer } from "../fail2ban/journal.js";
import { isOwnFileLine, type LogRecord, parseLogLine } from "../fail2ban/log-line.js";
import { LogTailer, type Position as TailerPosition } from "../fail2ban/log-tailer.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { RateLimitedLog } from "../toolkit/limited-log.js";
import type { Position } from "./outbox.js";

/** One entry of fail2ban's log, parsed (undefined: not one of fail2ban's lines), and where reading stands after it. */
export interface LogEntry {
  record: LogRecord | undefined;
  position: Position;
}

/** fail2ban's log as parsed entries, from a file or the journal alike. `close()` ends the iteration. */
export interface LogInput extends AsyncIterable<LogEntry> {
  close(): void;
}

export interface LogInputOptions {
  /** Where the last run stopped, if it read this source before. */
  saved: Position | undefined;
  signal: AbortSignal;
  logger: Logger;
  metrics: Metrics;
}

/** The input `monitor.source` names, resuming where the last run stopped. */
export async function openLogInput(settings: MonitorConfig, o: LogInputOptions): Promise<LogInput> {
  if (settings.source === "file") {
    const tailer = new LogTailer({
      file: settings.log,
      start: filePosition(o.saved) ?? (await currentEnd(settings.log)),
      pollIntervalMs: settings.pollInterval,
      signal: o.signal,
      logger: o.logger.child({ component: "tailer" }),
      metrics: o.metrics,
    });
    const parse = settings.trustSyslog ? parseLogLine : refusingSyslog(o.logger, o.metrics);
    return entries(tailer, ({ line, position }) => ({ record: parse(line), position }));
  }
  const journal = new JournalTailer({
    unit: settings.journalUnit,
    ...(o.saved && "cursor" in o.saved ? { cursor: o.saved.cursor } : {}),
    signal: o.signal,
    logger: o.logger.child({ component: "journal" }),
    metrics: o.metrics,
  });
  return entries(journal, ({ record, cursor }) => ({ record, position: { cursor } }));
}

/**
 * parseLogLine for a file that is not trusted to hold syslog-format lines (`monitor.trustSyslog`
 * off): such a line of fail2ban's is read past as if it were not fail2ban's, counted, and reported
 * once a minute with what to do instead. (The journal needs no such rule: it is matched on the
 * unit, which journald sets and no user can.)
 */
function refusingSyslog(logger: Logger, metrics: Metrics): (line: string) => LogRecord | undefined {
  const limited = new RateLimitedLog(60_000, 1);
  return (line) => {
    const record = parseLogLine(line);
    if (record === undefined || isOwnFileLine(line)) return record;
    metrics.inc("log_lines_dropped_total", { reason: "syslog-refused" });
    const suppressed = limited.allow("syslog");
    if (suppressed !== undefined) {
      logger.warn(
        { suppressed, refused: metrics.get("log_lines_dropped_total", { reason: "syslog-refused" }) },
        "syslog-format fail2ban line refused: any local user can forge one; read fail2ban's own log file or the journal (monitor.source: journald), or set monitor.trustSyslog: true",
      );
    }
    return undefined;
  };
}

function entries<T>(source: AsyncIterable<T> & { close(): void }, parse: (item: T) => LogEntry): LogInput {
  return {
    close: () => source.close(),
    async *[Symbol.asyncIterator]() {
      for await (const item of source) yield parse(item);
    },
  };
}

/**
 * The first run starts at the end of the log as it is now, fixed before the monitor reports that it
 * reads: a line written after that report is never skipped. A log that does not exist yet is read
 * from its start once it appears.
 */
async function currentEnd(file: string): Promise<{ inode: number; offset: number } | "end"> {
  try {
    const st = await stat(file);
    return { inode: st.ino, offset: st.size };
  } catch {
    return "end";
  }
}

function filePosition(position: Position | undefined): TailerPosition | undefined {
  return position && "inode" in position ? position : undefined;
}
