import type { BanExecutor } from "../fail2ban/executor.js";
import { BanQueue } from "../fail2ban/queue.js";
import { type Counters, type Logger, RateLimitedLog } from "../logging.js";
import type { Action, ActionRequest } from "./action.js";

/**
 * Bans and unbans through fail2ban, batched per jail (`set <jail> banip ip…`), at most two calls
 * in flight, from a bounded queue; through fail2ban-client itself or the root ban-helper.
 */
export class Fail2banAction implements Action {
  private readonly queue: BanQueue;
  private readonly log: Logger;
  private readonly dropLog = new RateLimitedLog(60_000, 3);

  constructor(
    executor: BanExecutor,
    batchSize: number,
    logger: Logger,
    private readonly counters: Counters,
  ) {
    const log = logger.child({ component: "fail2ban" });
    this.log = log;
    this.queue = new BanQueue(executor, {
      batchSize,
      concurrency: 2,
      onDone: (batch, count) => {
        counters.inc(`applied.${batch.kind}`, batch.ips.length);
        log.info(
          { kind: batch.kind, jail: batch.jail, ips: batch.ips, changed: count },
          `${batch.kind} applied`,
        );
      },
      onError: (error, batch) => {
        counters.inc(`action.failed.${batch.kind}`, batch.ips.length);
        log.error(
          { kind: batch.kind, jail: batch.jail, ips: batch.ips, err: (error as Error).message },
          `${batch.kind} failed`,
        );
      },
    });
  }

  async apply(requests: readonly ActionRequest[]): Promise<void> {
    for (const r of requests) {
      if (this.queue.push(r.kind, r.jail, r.ip)) continue;
      // Queue full (fail2ban far behind) or closing: counted and said, never silently lost.
      this.counters.inc(`action.dropped.${r.kind}`);
      const suppressed = this.dropLog.allow(r.kind);
      if (suppressed !== undefined) {
        this.log.error({ kind: r.kind, jail: r.jail, ip: r.ip, suppressed }, "fail2ban queue full: dropped");
      }
    }
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
