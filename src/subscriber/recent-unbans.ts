import type { BanEvent } from "../protocol/event.js";

/**
 * Unbans seen lately, by origin, jail and ip, with the origin's own sequence number (persisted by
 * the origin, so a higher one is a later event). A ban of the same origin, jail and ip with a lower
 * number was lifted by that origin after it was made: applying it now would undo the unban. That
 * happens when live updates are applied while a snapshot streams (the snapshot was read before the
 * unban and still carries the ban), and when two publishers deliver an origin's ban and unban in
 * opposite orders. Bounded: past `max` entries the oldest is forgotten.
 */
export class RecentUnbans {
  private readonly unbans = new Map<string, number>();

  constructor(private readonly max = 50_000) {}

  /** Call with verified unbans only: an entry suppresses bans. */
  record(unban: BanEvent): void {
    const key = keyOf(unban);
    const seq = Math.max(unban.seq, this.unbans.get(key) ?? 0);
    // Map keeps insertion order: re-inserting makes this the newest.
    this.unbans.delete(key);
    this.unbans.set(key, seq);
    if (this.unbans.size > this.max) {
      const oldest = this.unbans.keys().next().value;
      if (oldest !== undefined) this.unbans.delete(oldest);
    }
  }

  /** Whether `ban` was lifted by a later unban of its origin. */
  supersedes(ban: BanEvent): boolean {
    const seq = this.unbans.get(keyOf(ban));
    return seq !== undefined && seq > ban.seq;
  }
}

const keyOf = (event: BanEvent): string => `${event.origin} ${event.jail} ${event.ip}`;
