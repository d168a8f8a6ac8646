import { F2bzError } from "../errors.js";
import { type BanEvent, isEventId } from "./event.js";
import type { RejectReason } from "./reasons.js";

export interface ReplayGuardOptions {
  /** Events older than this are stale; ids are remembered for twice as long. */
  windowMs: number;
  /** Allowed clock skew of an origin ahead of us; default (and at most) `windowMs`. */
  maxFutureMs?: number;
  now?: () => number;
  /** Bound of the seen-cache; default 100 000 ids (a few MB). */
  maxEntries?: number;
}

export interface SeenEntry {
  id: string;
  /** Forget the id at this time (ms epoch). */
  until: number;
}

const DEFAULT_MAX_ENTRIES = 100_000;

/**
 * Refuses captured events replayed later, over another connection or through another publisher
 * (CURVE stops replay only within one connection). An event is accepted only inside the time
 * window and only once per id. Kind, time and expiry are signed, so a replayed or re-labelled
 * event (a `ban` turned `unban`) either fails the signature or hits this guard.
 *
 * An id is remembered until `max(now, time) + 2 × windowMs`: past that the event is stale anyway,
 * with room for the clock to step back by up to one window.
 *
 * Memory is bounded, failing closed: when the cache is full of unexpired ids, `check` answers
 * `busy` rather than forgetting an id that could then be replayed. Filling it takes `maxEntries`
 * valid signed events within two windows, i.e. authorized (compromised) origins beyond their rate
 * limits. `remember` always records an accepted event, so the cache can exceed its bound only by
 * the events checked but not yet remembered.
 *
 * For live events only. Snapshot entries are state, older than the window by design: verify them,
 * honour their expiry and de-duplicate them by id, but do not hold them to the window.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  private readonly windowMs: number;
  private readonly maxFutureMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** No full sweep before this time: the earliest `until` found by the last one. */
  private nextSweep = 0;

  constructor(options: ReplayGuardOptions) {
    const { windowMs, maxFutureMs = windowMs, maxEntries = DEFAULT_MAX_ENTRIES } = options;
    if (!Number.isSafeInteger(windowMs) || windowMs <= 0) {
      throw new F2bzError(
        "CONFIG_INVALID",
        `replay window ${windowMs} ms is invalid, expected a positive integer`,
      );
    }
    if (!Number.isSafeInteger(maxFutureMs) || maxFutureMs < 0 || maxFutureMs > windowMs) {
      throw new F2bzError(
        "CONFIG_INVALID",
        `clock skew ${maxFutureMs} ms is invalid, expected 0 to ${windowMs}`,
      );
    }
    if (!Number.isSafeInteger(maxEntries) || maxEntries <= 0) {
      throw new F2bzError(
        "CONFIG_INVALID",
        `seen-cache size ${maxEntries} is invalid, expected a positive integer`,
      );
    }
    this.windowMs = windowMs;
    this.maxFutureMs = maxFutureMs;
    this.maxEntries = maxEntries;
    this.now = options.now ?? Date.now;
  }

  /** Whether a verified event may be accepted now; does not record it (see `remember`). */
  check(event: Pick<BanEvent, "id" | "time">): RejectReason | undefined {
    const now = this.now();
    if (event.time < now - this.windowMs) return "stale";
    if (event.time > now + this.maxFutureMs) return "future";
    this.prune(now);
    if (this.seen.has(event.id)) return "replay";
    if (this.seen.size >= this.maxEntries && !this.makeRoom(now)) return "busy";
    return undefined;
  }

  /** Records an accepted event's id. */
  remember(event: Pick<BanEvent, "id" | "time">): void {
    const until = Math.max(this.now(), event.time) + 2 * this.windowMs;
    this.seen.set(event.id, Math.max(until, this.seen.get(event.id) ?? 0));
    this.nextSweep = Math.min(this.nextSweep, until);
  }

  /** `check` then, when accepted, `remember`. */
  admit(event: Pick<BanEvent, "id" | "time">): RejectReason | undefined {
    const reason = this.check(event);
    if (reason === undefined) this.remember(event);
    return reason;
  }

  get size(): number {
    return this.seen.size;
  }

  /** The unexpired ids, for a daemon to persist across restarts. */
  seenIds(): SeenEntry[] {
    const now = this.now();
    return [...this.seen].filter(([, until]) => until > now).map(([id, until]) => ({ id, until }));
  }

  /**
   * Reloads persisted ids, skipping malformed and expired ones; returns how many were kept. A
   * restart must not reopen the window for replay, so restore before accepting anything.
   */
  restore(entries: Iterable<SeenEntry>): number {
    const now = this.now();
    const valid = [...entries]
      .filter((e) => isEventId(e.id) && Number.isSafeInteger(e.until) && e.until > now)
      .sort((a, b) => a.until - b.until);
    for (const { id, until } of valid) {
      // Never shorten a retention already known, and never keep one beyond what remember() would.
      const capped = Math.min(until, now + 2 * this.windowMs + this.maxFutureMs);
      this.seen.set(id, Math.max(capped, this.seen.get(id) ?? 0));
      this.nextSweep = Math.min(this.nextSweep, capped);
    }
    return valid.length;
  }

  /** Drops expired ids from the oldest end; insertion order is nearly `until` order. */
  private prune(now: number): void {
    for (const [id, until] of this.seen) {
      if (until > now) break;
      this.seen.delete(id);
    }
  }

  /** A full sweep, at most once per earliest expiry, so a full cache costs no O(n) per message. */
  private makeRoom(now: number): boolean {
    if (now >= this.nextSweep) {
      let earliest = Number.POSITIVE_INFINITY;
      for (const [id, until] of this.seen) {
        if (until <= now) this.seen.delete(id);
        else earliest = Math.min(earliest, until);
      }
      this.nextSweep = earliest;
    }
    return this.seen.size < this.maxEntries;
  }
}
