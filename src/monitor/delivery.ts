import type * as zmq from "zeromq";
import type { Counters, Logger } from "../logging.js";
import { RateLimitedLog } from "../logging.js";
import { decodeSubmitReply } from "../protocol/feed.js";
import { encodeEventFrames } from "../protocol/frames.js";
import type { RejectReason } from "../protocol/reasons.js";
import { type CurveKeyPair, createClientSocket } from "../transport/sockets.js";
import type { Outbox, OutboxEntry } from "./outbox.js";

export interface LinkOptions {
  /** The publisher's submit endpoint; also its name in the outbox. */
  endpoint: string;
  serverKey: Uint8Array;
  identity: CurveKeyPair;
  outbox: Outbox;
  ackTimeoutMs: number;
  /** Re-signs an entry too old for the publishers' window; undefined drops it (its ban is over). */
  refresh: (entry: OutboxEntry) => Promise<OutboxEntry | undefined>;
  /** Entries older than this are re-signed before sending (half the acceptance window). */
  maxAgeMs: number;
  logger: Logger;
  counters: Counters;
  backoff?: { initialMs: number; maxMs: number };
}

/** Reasons a publisher may stop giving once something changes: retried, with back-off. */
const RETRY: ReadonlySet<RejectReason> = new Set(["rate-limited", "busy", "unauthorized", "future"]);

/**
 * Delivers the outbox to one publisher in order, one event per request (REQ/REP as in the original
 * design: the reply acknowledges the event by id). Lazy pirate: a reply that does not come within
 * `ackTimeoutMs` never hangs the monitor; the socket is closed and reopened and the event resent,
 * which the publisher de-duplicates by id. While the publisher is down, back-off grows to `maxMs`.
 */
export class PublisherLink {
  private socket: zmq.Request | undefined;
  private closed = false;
  private wakeUp: (() => void) | undefined;
  private backoffMs: number;
  private readonly log: Logger;
  private readonly problemLog = new RateLimitedLog(60_000, 1);
  private readonly loop: Promise<void>;

  constructor(private readonly o: LinkOptions) {
    this.backoffMs = this.backoff.initialMs;
    this.log = o.logger.child({ component: "delivery", publisher: o.endpoint });
    this.loop = this.run();
  }

  private get backoff() {
    return this.o.backoff ?? { initialMs: 250, maxMs: 30_000 };
  }

  /** New entries are in the outbox. */
  notify(): void {
    this.wakeUp?.();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket?.close();
    this.wakeUp?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      let entry = this.o.outbox.nextFor(this.o.endpoint);
      if (!entry) {
        await this.wait();
        continue;
      }
      try {
        if (Date.now() - entry.time > this.o.maxAgeMs) {
          const fresh = await this.o.refresh(entry);
          if (!fresh) continue;
          entry = fresh;
        }
        await this.deliver(entry);
      } catch (error) {
        if (this.closed) return;
        this.o.counters.inc("delivery.error");
        this.reset();
        this.problem("delivery failed", { err: (error as Error).message });
        await this.wait(this.nextBackoff());
      }
    }
  }

  private async deliver(entry: OutboxEntry): Promise<void> {
    const socket = this.connect();
    await socket.send(encodeEventFrames(entry.payload, entry.signature));
    let frames: Buffer[];
    try {
      frames = await socket.receive();
    } catch (error) {
      if (this.closed) return;
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      this.o.counters.inc("delivery.timeout");
      this.reset();
      this.problem("no reply from publisher in time: reconnecting and resending", { id: entry.id });
      await this.wait(this.nextBackoff());
      return;
    }
    const reply = decodeSubmitReply(frames);
    if (!reply.ok || reply.message.id !== entry.id) {
      this.o.counters.inc("delivery.bad-reply");
      this.reset();
      this.problem("unexpected reply from publisher: reconnecting", {
        reason: reply.ok ? "id" : reply.reason,
      });
      await this.wait(this.nextBackoff());
      return;
    }
    if (reply.message.type === "ack") {
      this.o.outbox.acknowledge(this.o.endpoint, entry.id);
      this.o.counters.inc("delivery.acked");
      this.backoffMs = this.backoff.initialMs;
      return;
    }
    const reason = reply.message.reason;
    this.o.counters.inc(`delivery.nack.${reason}`);
    if (reason === "stale") {
      const fresh = await this.o.refresh(entry);
      if (!fresh) this.o.outbox.acknowledge(this.o.endpoint, entry.id);
      return;
    }
    if (RETRY.has(reason)) {
      this.problem("publisher refused the event for now: retrying", { id: entry.id, reason });
      await this.wait(this.nextBackoff());
      return;
    }
    // Permanent: resending the same bytes can only be refused again.
    this.log.error({ id: entry.id, reason }, "publisher rejected the event: dropped for this publisher");
    this.o.outbox.acknowledge(this.o.endpoint, entry.id);
  }

  private connect(): zmq.Request {
    if (this.socket) return this.socket;
    const socket = createClientSocket("request", { identity: this.o.identity, serverKey: this.o.serverKey });
    socket.receiveTimeout = this.o.ackTimeoutMs;
    socket.sendTimeout = this.o.ackTimeoutMs;
    socket.connect(this.o.endpoint);
    this.socket = socket;
    return socket;
  }

  private reset(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  private nextBackoff(): number {
    const wait = this.backoffMs;
    this.backoffMs = Math.min(this.backoff.maxMs, this.backoffMs * 2);
    return wait;
  }

  private problem(message: string, fields: Record<string, unknown>): void {
    const suppressed = this.problemLog.allow(message);
    if (suppressed !== undefined) this.log.warn({ ...fields, suppressed }, message);
  }

  /** Until notify(), close(), or `ms` (when given). */
  private wait(ms?: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        this.wakeUp = undefined;
        done();
      };
    });
  }
}
