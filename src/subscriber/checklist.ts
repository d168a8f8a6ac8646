import type { Counters } from "../logging.js";
import type { NeverBanList } from "../policy/never-ban.js";
import type { BanEvent } from "../protocol/event.js";
import type { RejectReason } from "../protocol/reasons.js";
import type { ReplayGuard } from "../protocol/replay.js";
import { verifyEvent } from "../protocol/signature.js";
import { RecentUnbans } from "./recent-unbans.js";
import type { SubscriberStore } from "./store.js";

export type Source = "live" | "snapshot";

export type DropReason = "duplicate" | "unban-not-held" | "expired" | "superseded" | RejectReason;

export type Decision =
  | { ok: true; event: BanEvent; jail: string }
  /** `duplicate`: already applied, the same event through another publisher or again in a snapshot. */
  | { ok: false; reason: DropReason; event?: BanEvent };

export interface ChecklistOptions {
  /** This node's id: its own events come back through the publisher and are dropped (echo). */
  self: string;
  guard: ReplayGuard;
  store: SubscriberStore;
  neverBan: () => NeverBanList;
  /**
   * With `subscriber.origins`: the node ids allowed to originate events, asked at each event (the
   * directory is reloaded while running); otherwise undefined.
   */
  origins: { has(origin: string): boolean } | undefined;
  allowCidr: boolean;
  /**
   * Maps the event's jail to the local one (`same` or a fixed jail; the configured fallback jail
   * when that one does not exist locally); undefined when no target jail exists here.
   */
  mapJail: (jail: string) => string | undefined;
  counters: Counters;
  /** Seen ids of bans are kept until their expiry, at most this long from now (events.maxBanTime). */
  maxBanTimeMs?: number;
  /** Clock skew allowed for snapshot entries (events.window); live events have the guard's own. */
  maxFutureMs: number;
  now?: () => number;
}

const DEFAULT_MAX_BAN_TIME_MS = 30 * 24 * 3_600_000;

/**
 * The subscriber's checklist for one event, each step failing closed with a counted reason:
 * signature (over the exact bytes, origin derived from the key); own origin; time window and
 * seen-cache (live updates) or expiry and seen-cache (snapshot entries, which are as old as the ban
 * they carry); end-to-end origin authorization when configured; never-ban; jail mapping.
 */
export class Checklist {
  private readonly now: () => number;
  private readonly unbans = new RecentUnbans();

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
    // Untrusted: bytes from the publisher, signed (or not) by some origin.
    const verified = await verifyEvent(payload, signature, { allowCidr: o.allowCidr });
    if (!verified.ok) return { ok: false, reason: verified.reason };
    const event = verified.event;
    if (event.origin === o.self) return { ok: false, reason: "echo", event };
    // Before the seen-cache and the time window: an unban seen before (through another publisher,
    // or replayed) still says its origin lifted every earlier ban of this address.
    if (event.kind === "unban") this.unbans.record(event);
    else if (this.unbans.supersedes(event)) return { ok: false, reason: "superseded", event };
    const now = this.now();
    if (source === "live") {
      const reason = o.guard.check(event);
      if (reason === "replay") return { ok: false, reason: "duplicate", event };
      if (reason) return { ok: false, reason, event };
    } else {
      // The publisher serves only active bans; anything else in a snapshot is not what it claims.
      if (event.kind !== "ban") return { ok: false, reason: "schema", event };
      if (event.expires <= now) return { ok: false, reason: "expired", event };
      if (event.time > now + o.maxFutureMs) return { ok: false, reason: "future", event };
    }
    if (o.store.hasSeen(event.id)) return { ok: false, reason: "duplicate", event };
    if (o.origins && !o.origins.has(event.origin)) return { ok: false, reason: "unauthorized", event };
    const list = o.neverBan();
    if (event.ip.includes("/") ? list.overlaps(event.ip) : list.contains(event.ip)) {
      return { ok: false, reason: "never-ban", event };
    }
    const jail = o.mapJail(event.jail);
    if (jail === undefined) return { ok: false, reason: "jail", event };
    // Remembered from either path: a live copy of a snapshot entry (or the reverse, through a
    // second publisher) is then a duplicate. The insert is the atomic test.
    o.guard.remember(event);
    const keepUntil =
      event.kind === "ban"
        ? Math.max(event.time, Math.min(event.expires, now + (o.maxBanTimeMs ?? DEFAULT_MAX_BAN_TIME_MS)))
        : event.time;
    if (!o.store.markSeen(event.id, keepUntil)) return { ok: false, reason: "duplicate", event };
    return { ok: true, event, jail };
  }
}

/**
 * The jail mapping: the event's own jail (`same`) or the fixed cluster jail; when fail2ban has no
 * such jail, `fallbackJail` if one is configured and exists; otherwise undefined (the event is not
 * applied). With the local jails unknown (through the ban-helper, or a dry run) the target is taken
 * as it is.
 */
export function jailMapper(
  action: { jail: string; fallbackJail?: string | undefined },
  localJails: () => ReadonlySet<string> | undefined,
): (jail: string) => string | undefined {
  return (jail) => {
    const wanted = action.jail === "same" ? jail : action.jail;
    const jails = localJails();
    if (jails === undefined || jails.has(wanted)) return wanted;
    const fallback = action.fallbackJail;
    return fallback !== undefined && jails.has(fallback) ? fallback : undefined;
  };
}
