/** Monotonic milliseconds: a wall clock stepped back (NTP, an operator) must not drain the buckets. */
const monotonic = (): number => performance.now();

/** A token bucket: `rate` tokens per second, at most `burst` saved up. The clock is injectable. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = monotonic,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  take(): boolean {
    const now = this.now();
    // A clock that went backwards adds nothing; it would otherwise subtract hours of tokens.
    const elapsed = Math.max(0, now - this.last);
    this.tokens = Math.min(this.burst, this.tokens + (elapsed / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * Per-origin buckets plus one global bucket: a flood from one authorized origin is cut at its own
 * bucket before it can drain the global one, so other origins keep flowing.
 */
export class OriginLimiter {
  private readonly perOrigin = new Map<string, TokenBucket>();
  private readonly global: TokenBucket;

  constructor(
    private readonly options: { perOriginRate: number; perOriginBurst: number; globalRate: number },
    private readonly now: () => number = monotonic,
  ) {
    this.global = new TokenBucket(
      options.globalRate,
      Math.max(options.globalRate, options.perOriginBurst),
      now,
    );
  }

  /** Returns which limit refused the event, or undefined when it may pass. */
  take(origin: string): "origin" | "global" | undefined {
    let bucket = this.perOrigin.get(origin);
    if (!bucket) {
      // Origins are authorized keys (bounded by the key directory), so this map stays small.
      bucket = new TokenBucket(this.options.perOriginRate, this.options.perOriginBurst, this.now);
      this.perOrigin.set(origin, bucket);
    }
    if (!bucket.take()) return "origin";
    if (!this.global.take()) return "global";
    return undefined;
  }
}

/**
 * One bucket per peer in a bounded map: past `maxPeers` the least recently used bucket is forgotten.
 * Peers here are connections (an authorized key can open many), so the map must not grow with
 * them; a peer that comes back after being forgotten starts with a full bucket, which the global
 * limits of the caller still bound.
 */
export class PeerBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly options: { rate: number; burst: number; maxPeers: number },
    private readonly now: () => number = monotonic,
  ) {}

  take(peer: string): boolean {
    let bucket = this.buckets.get(peer);
    if (bucket) this.buckets.delete(peer);
    else bucket = new TokenBucket(this.options.rate, this.options.burst, this.now);
    // Map keeps insertion order: re-inserting makes this the most recently used.
    this.buckets.set(peer, bucket);
    if (this.buckets.size > this.options.maxPeers) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    return bucket.take();
  }

  get size(): number {
    return this.buckets.size;
  }
}
