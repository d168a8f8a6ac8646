import type { BanQueue } from "../fail2ban/queue.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import type { Action, ActionRequest } from "./action.js";

/**
 * An action fed through a `BanQueue` (fail2ban, exec): bounded, at most two calls in flight, and
 * for one jail and address in the order the requests came, never two at once, so an unban cannot
 * overtake its ban.
 */
export class QueuedAction implements Action {
  private readonly drops: LimitedLog;

  /** `what` names the queue in the log: "fail2ban queue full: dropped". */
  constructor(
    private readonly queue: BanQueue<ActionRequest>,
    private readonly what: string,
    logger: Logger,
    private readonly metrics: Metrics,
  ) {
    this.drops = new LimitedLog(logger, new RateLimitedLog(60_000, 3));
  }

  async apply(requests: readonly ActionRequest[]): Promise<void> {
    for (const r of requests) {
      if (this.queue.push(r.kind, r.jail, r.ip, r)) continue;
      // Queue full (the action far behind) or closing: counted and said, never silently lost.
      this.metrics.inc("action_dropped_total", { kind: r.kind });
      this.drops.error(r.kind, { kind: r.kind, jail: r.jail, ip: r.ip }, `${this.what} queue full: dropped`);
    }
  }

  /** Waits for what is queued and running. */
  close(): Promise<void> {
    return this.queue.close();
  }
}
