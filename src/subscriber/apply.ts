import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { type Action, requestsFor } from "./action.js";
import type { Checklist, DropReason, JailTarget, Source } from "./checklist.js";
import type { SubscriberStore } from "./store.js";

/** Drops an operator wants to see (someone signed or relayed something wrong); the rest is routine. */
const NOTABLE: ReadonlySet<DropReason> = new Set<DropReason>([
  "signature",
  "origin-mismatch",
  "schema",
  "version",
  "unauthorized",
  "never-ban",
  "future",
  "jail",
  "cidr",
  "ip",
]);

export interface ApplyOptions {
  checklist: Checklist;
  store: SubscriberStore;
  action: Action;
  /** Told when a hold is added, so that its expiry is scheduled. */
  expiry: { schedule(): void };
  /** subscriber.action's jail and fallbackJail, named when an event finds neither here. */
  target: JailTarget;
  metrics: Metrics;
  logger: Logger;
  now?: () => number;
}

/**
 * The apply step: each event a publisher delivers goes through the checklist; a ban that passes
 * adds its origin's hold and is applied when it is the first one, an unban releases that origin's
 * hold and is applied when it was the last one. The hold is recorded before the action runs.
 */
export class Apply {
  private readonly log: Logger;
  private readonly drops: LimitedLog;
  private readonly jails: LimitedLog;
  private readonly now: () => number;

  constructor(private readonly o: ApplyOptions) {
    this.log = o.logger.child({ component: "subscriber" });
    this.drops = new LimitedLog(this.log, new RateLimitedLog(60_000, 3));
    this.jails = new LimitedLog(this.log, new RateLimitedLog(60_000, 1));
    this.now = o.now ?? Date.now;
  }

  /** One signed event from a publisher; a refusal is counted by the checklist and logged here. */
  async event(payload: Buffer, signature: Buffer, source: Source): Promise<void> {
    const o = this.o;
    const decision = await o.checklist.check(payload, signature, source);
    if (!decision.ok) {
      const e = decision.event;
      const fields = {
        reason: decision.reason,
        id: e?.id,
        origin: e?.name,
        kind: e?.kind,
        jail: e?.jail,
        ip: e?.ip,
        source,
      };
      if (decision.reason === "jail" && e) {
        this.jails.warn(
          e.jail,
          { jail: e.jail, target: o.target.jail, fallback: o.target.fallbackJail },
          "the target jail does not exist in fail2ban, nor a fallbackJail: event dropped",
        );
      }
      if (NOTABLE.has(decision.reason)) this.drops.warn(decision.reason, fields, "event refused");
      else this.log.debug(fields, "event dropped");
      return;
    }
    const { event, jail, expires } = decision;
    const fields = { id: event.id, origin: event.name, jail, ip: event.ip };
    if (event.kind === "ban") {
      const holder = { jail, ip: event.ip, origin: event.origin, source: event.jail, id: event.id, expires };
      // Ledger first: the `Ban` line fail2ban writes must already be known as the cluster's.
      const first = o.store.addHolder(holder);
      o.expiry.schedule();
      const logged = { ...fields, source, expires: new Date(expires).toISOString() };
      if (!first) {
        // Already banned here: the hold only keeps it banned until this origin releases it too.
        o.metrics.inc("ban_holders_total", { change: "added" });
        this.log.debug(logged, "another holder of a ban applied here");
        return;
      }
      this.log.info(logged, "ban received");
      await this.handOver("ban", jail, event, expires);
      return;
    }
    // Only an origin's own hold is released: never a ban fail2ban made on its own, nor another
    // node's; the address is lifted once no origin holds it.
    const released = o.store.release(
      { jail, ip: event.ip, origin: event.origin, source: event.jail },
      this.now(),
    );
    if (released.removed === 0) {
      o.metrics.inc("events_dropped_total", { reason: "unban-not-held" });
      this.log.debug({ id: event.id, jail, ip: event.ip }, "unban of a ban not held here: ignored");
      return;
    }
    if (released.lifted.length === 0) {
      o.metrics.inc("ban_holders_total", { change: "released" });
      this.log.debug(fields, "unban by one holder: still held by another");
      return;
    }
    this.log.info(fields, "unban received");
    await this.handOver("unban", jail, event, expires);
  }

  /** Gives one address to the action; the latency runs from the event's time at its origin. */
  private async handOver(
    kind: "ban" | "unban",
    jail: string,
    event: { ip: string; origin: string; time: number },
    expires: number,
  ): Promise<void> {
    await this.o.action.apply([{ kind, jail, ip: event.ip, origin: event.origin, expires }]);
    this.o.metrics.observe("apply_latency_seconds", Math.max(0, this.now() - event.time) / 1000);
  }

  /**
   * At start, the bans held here are applied again: fail2ban forgets bans older than its
   * dbpurgeage (1 day by default) when it restarts, and `banip` of a ban it still holds changes
   * nothing (its log says `already banned`, never a new `Ban`). Only for an action that reaches
   * fail2ban: a command or a log line already ran once for each.
   */
  async reapplyHeld(): Promise<void> {
    const held = this.o.store.applied();
    if (held.length === 0) return;
    this.log.info({ count: held.length }, "re-applying held cluster bans");
    await this.o.action.apply(requestsFor("ban", held));
  }
}
