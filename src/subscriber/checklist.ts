import type { Metrics } from "../metrics/registry.js";
import { heldUntil } from "../policy/ban-time.js";
import type { BanEvent } from "../protocol/event.js";
import type { RejectReason } from "../protocol/reasons.js";
import { verifyEvent } from "../protocol/signature.js";
import type { LocalPolicy } from "./never-ban-source.js";
import { RecentUnbans } from "./recent-unbans.js";
import type { SubscriberStore } from "./store.js";

export type Source = "live" | "snapshot";

export type DropReason = "duplicate" | "unban-not-held" | "expired" | "superseded" | RejectReason;

export type Decision =
  /**
   * `jail`: the local jail. `expires`: a ban's expiry capped at events.maxBanTime from now (a
   * compromised origin cannot ban for ever); an unban's as signed.
   */
  | { ok: true; event: BanEvent; jail: string; expires: number }
  /** `duplicate`: already applied, the same event through another publisher or again in a snapshot. */
  | { ok: false; reason: DropReason; event?: BanEvent };

export interface ChecklistOptions {
  /** This node's id: its own events come back through the publisher and are dropped (echo). */
  self: string;
  /** The seen-cache (persisted, so a restart does not reopen it for replay). */
  store: SubscriberStore;
  /** The never-ban list and the local jails, as last read (they are refreshed while running). */
  local: { readonly current: LocalPolicy };
  /**
   * With `subscriber.origins`: the node ids allowed to originate events, asked at each event (the
   * directory is reloaded while running); otherwise undefined.
   */
  origins: { has(origin: string): boolean } | undefined;
  allowCidr: boolean;
  /** subscriber.action's target: the event's own jail (`same`) or a fixed one, and the fallback. */
  target: JailTarget;
  metrics: Metrics;
  /** A ban is held, and its id kept as seen, at most this long from now (events.maxBanTime). */
  maxBanTimeMs?: number;
  /**
   * events.window: a live event must be at most this old, and no event (live or snapshot) this far
   * ahead of our clock.
   */
  windowMs: number;
  now?: () => number;
}

const DEFAULT_MAX_BAN_TIME_MS = 30 * 24 * 3_600_000;

/**
 * The subscriber's checklist for one event, each step failing closed with a counted reason:
 * signature (over the exact bytes, origin derived from the key); own origin; time window (live
 * updates) or expiry (snapshot entries, which are as old as the ban they carry); the seen-cache,
 * one and persisted, for both paths; end-to-end origin authorization when configured; never-ban;
 * jail mapping.
 */
export class Checklist {
  private readonly now: () => number;
  private readonly unbans = new RecentUnbans();

  constructor(private readonly o: ChecklistOptions) {
    this.now = o.now ?? Date.now;
  }

  async check(payload: Buffer, signature: Buffer, source: Source): Promise<Decision> {
    const decision = await this.decide(payload, signature, source);
    if (decision.ok) this.o.metrics.inc("events_accepted_total", { source });
    else this.o.metrics.inc("events_dropped_total", { reason: decision.reason });
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
      // The window bounds how long a captured event could be replayed; the seen-cache below keeps
      // every id at least that long (two windows), so a replay inside it is a duplicate.
      if (event.time < now - o.windowMs) return { ok: false, reason: "stale", event };
    } else {
      // The publisher serves only active bans; anything else in a snapshot is not what it claims.
      if (event.kind !== "ban") return { ok: false, reason: "schema", event };
      if (event.expires <= now) return { ok: false, reason: "expired", event };
    }
    if (event.time > now + o.windowMs) return { ok: false, reason: "future", event };
    if (o.store.hasSeen(event.id)) return { ok: false, reason: "duplicate", event };
    if (o.origins && !o.origins.has(event.origin)) return { ok: false, reason: "unauthorized", event };
    const local = o.local.current;
    if (event.ip.includes("/") ? local.neverBan.overlaps(event.ip) : local.neverBan.contains(event.ip)) {
      return { ok: false, reason: "never-ban", event };
    }
    const jail = mapJail(o.target, local.jails, event.jail);
    if (jail === undefined) return { ok: false, reason: "jail", event };
    // Remembered from either path: a live copy of a snapshot entry (or the reverse, through a
    // second publisher) is then a duplicate. The insert is the atomic test.
    const expires = heldUntil(event, now, o.maxBanTimeMs ?? DEFAULT_MAX_BAN_TIME_MS);
    const keepUntil = event.kind === "ban" ? Math.max(event.time, expires) : event.time;
    if (!o.store.markSeen(event.id, keepUntil)) return { ok: false, reason: "duplicate", event };
    return { ok: true, event, jail, expires };
  }
}

export interface JailTarget {
  /** A jail name, or `same` for the event's own jail. */
  jail: string;
  fallbackJail?: string | undefined;
}

/**
 * The local jail for an event's jail: its own (`same`) or the fixed cluster jail; when fail2ban has
 * no such jail, `fallbackJail` if one is configured and exists; otherwise undefined (the event is
 * not applied). With the local jails unknown (through the ban-helper, or a dry run) the target is
 * taken as it is.
 */
export function mapJail(
  target: JailTarget,
  localJails: ReadonlySet<string> | undefined,
  jail: string,
): string | undefined {
  const wanted = target.jail === "same" ? jail : target.jail;
  if (localJails === undefined || localJails.has(wanted)) return wanted;
  const fallback = target.fallbackJail;
  return fallback !== undefined && localJails.has(fallback) ? fallback : undefined;
}
