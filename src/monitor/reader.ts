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
 * Reads fail2ban's log into the interpreter and hands what it produces to the committer, which
 * stores it a chunk of lines at a time, until the input ends (its close, by the monitor's signal). While the outbox is full reading
 * pauses: the log keeps the lines for later.
 */
export async function readLog(input: LogInput, o: ReaderOptions): Promise<void> {
  const fullLog = new LimitedLog(o.logger, new RateLimitedLog(60_000, 1));

  // Entries the outbox surely has room for: the outbox only shrinks but by what this reader hands
  // over, so it is counted again (a scan of the table) only once these are used up, not per line.
  let free = 0;
  const used = () => o.outbox.size() + o.committer.queued;
  /** False when the monitor stopped meanwhile (the line is then read again at the next start). */
  const roomInOutbox = async (): Promise<boolean> => {
    if (free <= 0) free = o.limit - used();
    if (free <= 0 && o.committer.queued > 0) {
      // Full only by what is stored: what is queued may yet be dropped as unpublishable.
      await o.committer.settled();
      free = o.limit - used();
    }
    if (free > 0) {
      free--;
      return !o.signal.aborted;
    }
    o.metrics.inc("outbox_full_total");
    const announced = fullLog.error(
      "full",
      { limit: o.limit },
      "outbox full: publishers are not acknowledging; log reading paused",
    );
    while (!o.signal.aborted && used() >= o.limit) await o.room.wait(undefined, o.signal);
    if (o.signal.aborted) return false;
    free = o.limit - used() - 1;
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
      // Not awaited: the next lines gather into the same chunk while the one before it is stored.
      if (produced.length > 0) void o.committer.commit(produced);
      await o.committer.room();
    }
  } catch (error) {
    if (!o.signal.aborted) o.logger.error({ err: (error as Error).message }, "log input failed");
  }
}
