import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { realSchedule, type Schedule } from "../toolkit/wake-up.js";
import { type Action, requestsFor } from "./action.js";
import type { AppliedBan, SubscriberStore } from "./store.js";

/** The timer never sleeps longer than this, so a clock step is noticed within a minute. */
const MAX_WAIT_MS = 60_000;

export interface ExpiryOptions {
  store: SubscriberStore;
  action: Action;
  metrics: Metrics;
  logger: Logger;
  /** The daemon's: once it fires, nothing is scheduled or lifted any more. */
  signal: AbortSignal;
  now?: () => number;
  schedule?: Schedule;
}

/**
 * The expiry step: fail2ban's `banip` takes no duration, so the subscriber lifts each ban itself
 * once its last holder expired, on its own timer (also for bans that expired while it was down),
 * or when a publisher announces that a hold expired.
 */
export class Expiry {
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly timer: Schedule;
  private cancel: (() => void) | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly o: ExpiryOptions) {
    this.log = o.logger.child({ component: "subscriber" });
    this.now = o.now ?? Date.now;
    this.timer = o.schedule ?? realSchedule;
  }

  /** Sets the timer to the next expiry held (again after a hold was added or released). */
  schedule(): void {
    this.cancel?.();
    this.cancel = undefined;
    if (this.o.signal.aborted) return;
    const next = this.o.store.nextExpiry();
    if (next === undefined) return;
    const wait = Math.max(0, Math.min(next - this.now(), MAX_WAIT_MS));
    this.cancel = this.timer(() => void this.run(), wait);
  }

  /** Lifts what has expired, then schedules the next; one run at a time, a failure is logged. */
  run(): Promise<void> {
    this.running ??= this.lift()
      .catch((error: Error) => this.log.error({ err: error.message }, "expiry failed"))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** Unsigned, from the pinned publisher: releases only the hold of that very event id. */
  async announced(expiry: { ip: string; id: string }): Promise<void> {
    const released = this.o.store.release({ ip: expiry.ip, id: expiry.id }, this.now());
    if (released.removed > 0) this.o.metrics.inc("ban_holders_total", { change: "expiry-released" });
    await this.unban(released.lifted, "bans lifted by the publisher's expiry");
    this.schedule();
  }

  /** Stops the timer and waits for a run in progress. */
  async close(): Promise<void> {
    this.cancel?.();
    this.cancel = undefined;
    await this.running;
  }

  private async lift(): Promise<void> {
    this.cancel = undefined;
    if (this.o.signal.aborted) return;
    await this.unban(this.o.store.expire(this.now()).lifted, "expired bans lifted");
    this.schedule();
  }

  private async unban(lifted: readonly AppliedBan[], why: string): Promise<void> {
    if (lifted.length === 0) return;
    this.o.metrics.inc("bans_expired_total", lifted.length);
    this.log.info({ count: lifted.length, ips: lifted.map((b) => b.ip) }, why);
    await this.o.action.apply(requestsFor("unban", lifted));
  }
}
