import type { Counters } from "../logging.js";
import type { NeverBanList } from "../policy/never-ban.js";
import type { BanEvent } from "../protocol/event.js";
import type { RejectReason } from "../protocol/reasons.js";
import type { ReplayGuard } from "../protocol/replay.js";
import { verifyEvent } from "../protocol/signature.js";
import type { SubscriberStore } from "./store.js";

export type Source = "live" | "snapshot";

export type Decision =
  | { ok: true; event: BanEvent; jail: string }
  /** Already applied: the same event through another publisher, or again in a snapshot. */
  | { ok: false; reason: "duplicate" | "unban-not-held" | "expired" | RejectReason; event?: BanEvent };

export interface ChecklistOptions {
  /** This node's id: its own events come back through the publisher and are dropped (echo). */
  self: string;
  guard: ReplayGuard;
  store: SubscriberStore;
  neverBan: () => NeverBanList;
  /** With `subscriber.origins`: the node ids allowed to originate events; otherwise undefined. */
  origins: ReadonlySet<string> | undefined;
  allowCidr: boolean;
  /** Maps the event's jail to the local one (`same`, a fixed jail, fallback when absent). */
  mapJail: (jail: string) => string;
  counters: Counters;
  now?: () => number;
}

/**
 * The subscriber's checklist for one event, each step failing closed with a counted reason:
 * signature (over the exact bytes, origin derived from the key); own origin; time window and
 * seen-cache (live updates) or expiry (snapshot entries, which are as old as the ban they carry);
 * end-to-end origin authorization when configured; never-ban; jail mapping.
 */
export class Checklist {
  private readonly now: () => number;

  constructor(private readonly o: ChecklistOptions) {
    this.now = o.now ?? Date.now;
  }

  async check(payload: Buffer, signature: Buffer, source: Source): Promise<Decision> {
    const decision = await this.decide(payload, signature, source);
    this.o.counters.inc(decision.ok ? `accepted.${source}` : `dropped.${decision.reason}`);
    return decision;
  }

  private async decide(payload: Buffer, signature: Buffer, source: Source): Promise<Decision> {
    const o = this.o;
    const verified = await verifyEvent(payload, signature, { allowCidr: o.allowCidr });
    if (!verified.ok) return { ok: false, reason: verified.reason };
    const event = verified.event;
    if (event.origin === o.self) return { ok: false, reason: "echo", event };
    const now = this.now();
    const jail = o.mapJail(event.jail);
    if (source === "live") {
      const reason = o.guard.check(event);
      if (reason === "replay") return { ok: false, reason: "duplicate", event };
      if (reason) return { ok: false, reason, event };
    } else {
      if (event.kind !== "ban") return { ok: false, reason: "schema", event };
      if (event.expires <= now) return { ok: false, reason: "expired", event };
      if (o.store.isApplied(jail, event.ip)) return { ok: false, reason: "duplicate", event };
    }
    if (o.origins && !o.origins.has(event.origin)) return { ok: false, reason: "unauthorized", event };
    const list = o.neverBan();
    if (event.ip.includes("/") ? list.overlaps(event.ip) : list.contains(event.ip)) {
      return { ok: false, reason: "never-ban", event };
    }
    // Remembered from either path: a live copy of a snapshot entry (or the reverse, through a
    // second publisher) is then a duplicate.
    o.guard.remember(event);
    if (!o.store.markSeen(event.id, event.time)) return { ok: false, reason: "duplicate", event };
    return { ok: true, event, jail };
  }
}
