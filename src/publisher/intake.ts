import type { Logger } from "../logging.js";
import { untrusted } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { heldUntil } from "../policy/ban-time.js";
import type { NeverBanList } from "../policy/never-ban.js";
import type { BanEvent } from "../protocol/event.js";
import { decodeEventFrames } from "../protocol/frames.js";
import { peekEnvelope } from "../protocol/peek.js";
import type { RejectReason } from "../protocol/reasons.js";
import { verifyEvent } from "../protocol/signature.js";
import { encodeAck, encodeNack } from "../protocol/submit.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import type { OriginLimiter } from "./rate-limit.js";
import type { PublisherStore } from "./store.js";

/** An event that passed every check before storing. */
interface Candidate {
  event: BanEvent;
  payload: Buffer;
  signature: Buffer;
}

export interface IntakeOptions {
  store: PublisherStore;
  /** Whether `origin` (derived from `key`) is an authorized, not revoked monitor. */
  isAuthorizedOrigin: (origin: string, key: Uint8Array) => boolean;
  neverBan: NeverBanList;
  limiter: OriginLimiter;
  windowMs: number;
  /** A ban is held at most this long from its arrival, as subscribers hold it (events.maxBanTime). */
  maxBanTimeMs: number;
  allowCidr: boolean;
  /** Live holders one origin may have; a ban that would add one more is refused (0: no cap). */
  maxActivePerOrigin: number;
  /** Called for every event that changes the active set, after it is durably stored. */
  broadcast: (payload: Buffer, signature: Buffer, publisherSeq: number) => void;
  metrics: Metrics;
  logger: Logger;
  now?: () => number;
}

/**
 * The publisher's checklist for one submitted message, cheapest step first, each failing closed
 * with a reason the monitor logs: frames and sizes; the envelope read from its canonical layout;
 * time window; seen-cache (a resend after a lost ack is acknowledged again, never re-broadcast);
 * authorized origin; Ed25519 signature and strict parse; never-ban; rate limits; the origin's cap
 * of active bans. The reply is an
 * ack only once the event is durably stored. Rejections are counted (`events_dropped_total{reason}`) and logged
 * at most a few times per reason and interval.
 */
export class Intake {
  private readonly now: () => number;
  private readonly dropLog: LimitedLog;
  private readonly limitLog: LimitedLog;

  constructor(private readonly options: IntakeOptions) {
    this.now = options.now ?? Date.now;
    this.dropLog = new LimitedLog(options.logger, new RateLimitedLog(10_000, 3));
    this.limitLog = new LimitedLog(options.logger, new RateLimitedLog(60_000, 1));
  }

  /** Never rejects: an internal failure (the state file, say) is a `busy` nack the monitor retries. */
  async handle(frames: readonly Buffer[]): Promise<Buffer[]> {
    const [reply] = await this.handleBatch([frames]);
    return reply!;
  }

  /**
   * Group commit: every message is checked (signatures included) first, then the accepted ones are
   * stored in one transaction, in arrival order, and only after it committed are they broadcast
   * and acknowledged. One reply per message, in order. Never rejects: a failed commit answers each
   * stored-to-be event with a `busy` nack, so nothing is acknowledged that is not on disk.
   */
  async handleBatch(batch: readonly (readonly Buffer[])[]): Promise<Buffer[][]> {
    const checked = await Promise.all(batch.map((frames) => this.check(frames)));
    if (checked.every((c) => Array.isArray(c))) return checked as Buffer[][];
    const now = this.now();
    const after: (() => void)[] = [];
    let replies: Buffer[][];
    try {
      replies = this.options.store.inOneTransaction(() =>
        checked.map((c) => (Array.isArray(c) ? c : this.commit(c, now, after))),
      );
    } catch (error) {
      this.options.metrics.inc("submissions_failed_total");
      const err = error instanceof Error ? error.message : String(error);
      this.dropLog.error("internal-error", { err }, "intake failed");
      return checked.map((c) => (Array.isArray(c) ? c : this.reject(c.event.id, "busy")));
    }
    for (const announce of after) announce();
    return replies;
  }

  /** The checks before storing: a reply when the message is refused (or already seen), else the event. */
  private async check(frames: readonly Buffer[]): Promise<Buffer[] | Candidate> {
    this.options.metrics.inc("submissions_total");
    const message = decodeEventFrames(frames);
    if (!message.ok) return this.reject("", message.reason);
    const peeked = peekEnvelope(message.payload);
    if (!peeked.ok) return this.reject("", peeked.reason);
    const o = this.options;
    const { id, origin, time, key } = peeked.envelope;
    try {
      const now = this.now();
      if (time < now - o.windowMs) return this.reject(id, "stale");
      if (time > now + o.windowMs) return this.reject(id, "future");
      if (o.store.hasSeen(id)) {
        o.metrics.inc("submissions_accepted_total", { outcome: "duplicate" });
        return encodeAck(id);
      }
      if (!o.isAuthorizedOrigin(origin, key)) return this.reject(id, "unauthorized");
      const verified = await verifyEvent(message.payload, message.signature, { allowCidr: o.allowCidr });
      if (!verified.ok) return this.reject(id, verified.reason);
      const event = verified.event;
      if (event.id !== id || event.time !== time) return this.reject(id, "schema");
      if (event.ip.includes("/") ? o.neverBan.overlaps(event.ip) : o.neverBan.contains(event.ip)) {
        return this.reject(id, "never-ban");
      }
      return { event, payload: message.payload, signature: message.signature };
    } catch (error) {
      o.metrics.inc("submissions_failed_total");
      const err = error instanceof Error ? error.message : String(error);
      this.dropLog.error("internal-error", { err }, "intake failed");
      return this.reject(id, "busy");
    }
  }

  /** Inside the batch's transaction; broadcasts wait in `after` until it committed. */
  private commit(candidate: Candidate, now: number, after: (() => void)[]): Buffer[] {
    const o = this.options;
    const { event, payload, signature } = candidate;
    const limited = o.limiter.take(event.origin);
    if (limited) {
      o.metrics.inc("submissions_rate_limited_total", { limit: limited });
      return this.reject(event.id, "rate-limited");
    }
    // Subscribers cap a ban at their maxBanTime; a publisher holding it longer would absorb (as
    // already active) a new ban of the address that the subscribers no longer enforce.
    const expires = heldUntil(event, now, o.maxBanTimeMs);
    const outcome = o.store.accept({ ...event, expires }, payload, signature, now, {
      maxActivePerOrigin: o.maxActivePerOrigin,
    });
    if (outcome.type === "over-limit") {
      this.limitLog.warn(
        event.origin,
        { origin: event.name, node: event.origin, active: outcome.active },
        "origin reached publisher.maxActivePerOrigin: its new bans are refused",
      );
      return this.reject(event.id, "origin-limit");
    }
    o.metrics.inc("submissions_accepted_total", { outcome: outcome.type });
    if (outcome.type === "broadcast") {
      after.push(() => {
        o.broadcast(payload, signature, outcome.publisherSeq);
        o.logger.info(
          {
            id: event.id,
            origin: event.name,
            kind: event.kind,
            jail: event.jail,
            ip: event.ip,
            seq: outcome.publisherSeq,
          },
          "event accepted",
        );
      });
    } else {
      o.logger.debug({ id: event.id, outcome: outcome.type }, "event acknowledged without broadcast");
    }
    return encodeAck(event.id);
  }

  private reject(id: string, reason: RejectReason): Buffer[] {
    this.options.metrics.inc("events_dropped_total", { reason });
    this.dropLog.warn(reason, () => ({ reason, id: untrusted(id, 60) }), "submitted event rejected");
    return encodeNack(id, reason);
  }
}
