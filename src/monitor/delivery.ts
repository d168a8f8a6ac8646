import type * as zmq from "zeromq";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { encodeEventFrames } from "../protocol/frames.js";
import type { RejectReason } from "../protocol/reasons.js";
import { decodeSubmitReply } from "../protocol/submit.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { realSchedule, type Schedule, sleep, WakeUp } from "../toolkit/wake-up.js";
import { type HandshakeNews, HandshakeWatch } from "../transport/handshake-watch.js";
import { type CurveKeyPair, createClientSocket } from "../transport/sockets.js";
import type { Outbox, OutboxEntry } from "./outbox.js";

export interface LinkOptions {
  /** The publisher's submit endpoint. */
  endpoint: string;
  /** Its name in the outbox: its pinned key, which a renamed endpoint keeps. */
  name: string;
  serverKey: Uint8Array;
  identity: CurveKeyPair;
  outbox: Outbox;
  ackTimeoutMs: number;
  /** Re-signs an entry too old for the publishers' window; undefined drops it (its ban is over). */
  refresh: (entry: OutboxEntry) => Promise<OutboxEntry | undefined>;
  /** Entries older than this are re-signed before sending (half the acceptance window). */
  maxAgeMs: number;
  logger: Logger;
  metrics: Metrics;
  /** After every acknowledgement or drop: the outbox may have room again. */
  onProgress?: () => void;
  backoff?: { initialMs: number; maxMs: number };
  /** The monitor's: its abort ends the loop as close() does. */
  signal?: AbortSignal;
  /** The clock that ages entries (the event factory's), and the timer of back-offs: tests inject both. */
  now?: () => number;
  schedule?: Schedule;
}

/** Reasons a publisher may stop giving once something changes: retried, with back-off. */
const RETRY: ReadonlySet<RejectReason> = new Set(["rate-limited", "busy", "unauthorized", "future"]);

/**
 * Delivers the outbox to one publisher in order, one event per request (REQ/REP as in the original
 * design: the reply acknowledges the event by id). Lazy pirate: a reply that does not come within
 * `ackTimeoutMs` never hangs the monitor; the socket is closed and reopened and the event resent,
 * which the publisher de-duplicates by id. While the publisher is down, back-off grows to `maxMs`;
 * new events do not cut a back-off short (they would turn it into a retry per logged ban).
 */
export class PublisherLink {
  private socket: zmq.Request | undefined;
  /** Aborted by close() or the monitor's signal: ends every wait, and the loop. */
  private readonly stop = new AbortController();
  /** Ends the idle wait: new entries (an abort ends it too). */
  private readonly entries: WakeUp;
  private readonly now: () => number;
  private backoffMs: number;
  /** Says why a publisher does not answer, which the lazy-pirate timeout alone cannot. */
  private readonly handshakes: HandshakeWatch;
  /** The entry last signed again because this publisher called it stale. */
  private resignedAfterStale: string | undefined;
  private readonly log: Logger;
  private readonly problems: LimitedLog;
  private readonly loop: Promise<void>;

  constructor(private readonly o: LinkOptions) {
    this.backoffMs = this.backoff.initialMs;
    this.now = o.now ?? Date.now;
    this.entries = new WakeUp(o.schedule ?? realSchedule);
    this.log = o.logger.child({ component: "delivery", publisher: o.endpoint });
    this.problems = new LimitedLog(this.log, new RateLimitedLog(60_000, 1));
    this.handshakes = new HandshakeWatch({
      role: "monitor",
      serverKey: o.serverKey,
      onNews: (n) => this.onHandshake(n),
    });
    // An abort also ends an unanswered request at once, not after the ack timeout.
    this.stop.signal.addEventListener("abort", () => this.socket?.close(), { once: true });
    if (o.signal?.aborted) this.stop.abort();
    else o.signal?.addEventListener("abort", () => this.stop.abort(), { once: true });
    this.loop = this.run();
  }

  /** Whether the publisher's handshake has completed on the current connection. */
  get connected(): boolean {
    return this.handshakes.connected;
  }

  private get closed(): boolean {
    return this.stop.signal.aborted;
  }

  private get backoff() {
    return this.o.backoff ?? { initialMs: 250, maxMs: 30_000 };
  }

  /** New entries are in the outbox. */
  notify(): void {
    this.entries.wake();
  }

  /** Ends the loop (an unanswered request is abandoned: the entry stays in the outbox). Idempotent. */
  async close(): Promise<void> {
    this.stop.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    try {
      await this.serve();
    } finally {
      // A socket opened while close() was waiting for a signature must not outlive the link.
      this.reset();
    }
  }

  private async serve(): Promise<void> {
    while (!this.closed) {
      let entry = this.o.outbox.nextFor(this.o.name);
      if (!entry) {
        await this.idle();
        continue;
      }
      try {
        if (this.now() - entry.time > this.o.maxAgeMs) {
          // Publishers refuse events older than their window: sign it again (new id, same ban).
          const fresh = await this.o.refresh(entry);
          this.progress();
          // Undefined: its ban is over, or another link replaced it; either way, look again.
          if (!fresh) continue;
          this.o.metrics.inc("deliveries_total", { result: "resigned" });
          entry = fresh;
        }
        await this.deliver(entry);
      } catch (error) {
        if (this.closed) return;
        this.o.metrics.inc("deliveries_total", { result: "error" });
        this.reset();
        this.problem("delivery failed", { err: (error as Error).message });
        await this.sleep(this.nextBackoff());
      }
    }
  }

  private async deliver(entry: OutboxEntry): Promise<void> {
    if (this.closed) return;
    const socket = this.connect();
    await socket.send(encodeEventFrames(entry.payload, entry.signature));
    let frames: Buffer[];
    try {
      frames = await socket.receive();
    } catch (error) {
      if (this.closed) return;
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      this.o.metrics.inc("deliveries_total", { result: "timeout" });
      this.reset();
      this.problem("no reply from publisher in time: reconnecting and resending", { id: entry.id });
      await this.sleep(this.nextBackoff());
      return;
    }
    const reply = decodeSubmitReply(frames);
    // REQ/REP is lockstep, so a refusal without an id (the publisher could not even read the
    // event) is still the answer to this entry.
    const forEntry =
      reply.ok &&
      (reply.message.id === entry.id || (reply.message.type === "nack" && reply.message.id === ""));
    if (!reply.ok || !forEntry) {
      this.o.metrics.inc("deliveries_total", { result: "bad-reply" });
      this.reset();
      this.problem("unexpected reply from publisher: reconnecting", {
        reason: reply.ok ? "id" : reply.reason,
      });
      await this.sleep(this.nextBackoff());
      return;
    }
    if (reply.message.type === "ack") {
      this.o.outbox.acknowledge(this.o.name, entry.id);
      this.o.metrics.inc("deliveries_total", { result: "acked" });
      this.o.metrics.observe("publish_latency_seconds", Math.max(0, this.now() - entry.time) / 1000);
      this.backoffMs = this.backoff.initialMs;
      this.progress();
      return;
    }
    const reason = reply.message.reason;
    this.o.metrics.inc("deliveries_total", { result: "nacked" });
    this.o.metrics.inc("deliveries_nacked_total", { reason });
    if (reason === "stale") {
      // The publisher's window is shorter than ours: sign it again and resend at once. Refused
      // again although just signed, their clock is ahead of ours: back off, or this would spin.
      if (entry.id === this.resignedAfterStale) {
        this.problem("publisher refuses even freshly signed events as stale: check both clocks", {
          id: entry.id,
        });
        await this.sleep(this.nextBackoff());
        if (this.closed) return;
      }
      this.resignedAfterStale = (await this.o.refresh(entry))?.id;
      this.progress();
      return;
    }
    if (RETRY.has(reason)) {
      this.problem("publisher refused the event for now: retrying", { id: entry.id, reason });
      await this.sleep(this.nextBackoff());
      return;
    }
    // Permanent: resending the same bytes can only be refused again.
    this.log.error({ id: entry.id, reason }, "publisher rejected the event: dropped for this publisher");
    this.o.outbox.acknowledge(this.o.name, entry.id);
    this.progress();
  }

  private connect(): zmq.Request {
    if (this.socket) return this.socket;
    const socket = createClientSocket("request", { identity: this.o.identity, serverKey: this.o.serverKey });
    socket.receiveTimeout = this.o.ackTimeoutMs;
    socket.sendTimeout = this.o.ackTimeoutMs;
    socket.connect(this.o.endpoint);
    this.socket = socket;
    void this.handshakes.watch(socket);
    return socket;
  }

  /** Our key refused by the publisher's ZAP handler, or its key not the one pinned (over socket resets). */
  private onHandshake(news: HandshakeNews): void {
    if (news.type === "connected") this.log.info("connected to publisher");
    else if (news.type === "refused") {
      this.o.metrics.inc("deliveries_total", { result: "refused" });
      this.problem(news.problem, news.fields);
    } else if (news.type === "mismatch") this.problem(news.problem, news.fields);
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
    this.problems.warn(message, fields, message);
  }

  private progress(): void {
    this.o.onProgress?.();
  }

  /** Until notify() or close(). */
  private async idle(): Promise<void> {
    await this.entries.wait(undefined, this.stop.signal);
  }

  /** For `ms`, or until close(). */
  private async sleep(ms: number): Promise<void> {
    await sleep(ms, this.stop.signal, this.o.schedule);
  }
}
