import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import type { WakeUp } from "../toolkit/wake-up.js";
import type { Committer } from "./committer.js";
import type { LogInterpreter } from "./interpret.js";
import type { LogInput } from "./log-input.js";
import type { Outbox } from "./outbox.js";

export interface ReaderOptions {
  interpreter: LogInterpreter;
  committer: Committer;
  outbox: Outbox;
  /** Entries the outbox may hold before reading pauses (`monitor.outboxLimit`). */
  limit: number;
  /** Woken whenever a publisher acknowledged or an entry was dropped: the outbox may have room. */
  room: WakeUp;
  signal: AbortSignal;
  logger: Logger;
  metrics: Metrics;
}

/**
 * Reads fail2ban's log into the interpreter and hands what it produces to the committer, line by
 * line, until the input ends (its close, by the monitor's signal). While the outbox is full reading
 * pauses: the log keeps the lines for later.
 */
export async function readLog(input: LogInput, o: ReaderOptions): Promise<void> {
  const fullLog = new LimitedLog(o.logger, new RateLimitedLog(60_000, 1));

  /** False when the monitor stopped meanwhile (the line is then read again at the next start). */
  const roomInOutbox = async (): Promise<boolean> => {
    if (o.outbox.size() < o.limit) return !o.signal.aborted;
    o.metrics.inc("outbox_full_total");
    const announced = fullLog.error(
      "full",
      { limit: o.limit },
      "outbox full: publishers are not acknowledging; log reading paused",
    );
    while (!o.signal.aborted && o.outbox.size() >= o.limit) await o.room.wait(undefined, o.signal);
    if (o.signal.aborted) return false;
    if (announced) o.logger.info("outbox has room again: log reading resumed");
    return true;
  };

  try {
    for await (const { record, position } of input) {
      // Only a ban or unban line can add to the outbox; other lines are read on (a count per line
      // would cost a scan of a large outbox for every `Found`).
      const adds = record?.type === "ban" || record?.type === "unban";
      if (adds ? !(await roomInOutbox()) : o.signal.aborted) return;
      o.committer.advance(position);
      const produced = record ? o.interpreter.push(record) : [];
      if (produced.length > 0) await o.committer.commit(produced);
    }
  } catch (error) {
    if (!o.signal.aborted) o.logger.error({ err: (error as Error).message }, "log input failed");
  }
}
