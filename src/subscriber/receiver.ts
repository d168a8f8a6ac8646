import type * as zmq from "zeromq";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import {
  decodeFeed,
  type Expiry,
  type FeedMessage,
  MAX_FEED_FRAME_BYTES,
  TOPIC_UPDATE,
} from "../protocol/feed.js";
import {
  decodeSnapshotReply,
  encodeCredit,
  encodeSnapshotRequest,
  MAX_CHUNK_BYTES,
  type SnapshotEntry,
} from "../protocol/snapshot.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { SerialQueue } from "../toolkit/serial-queue.js";
import { sleep } from "../toolkit/wake-up.js";
import { type HandshakeNews, HandshakeWatch } from "../transport/handshake-watch.js";
import { type CurveKeyPair, createClientSocket } from "../transport/sockets.js";
import { SeqRuns } from "./seq-runs.js";

export interface ReceiverOptions {
  feed: string;
  snapshot: string;
  serverKey: Uint8Array;
  identity: CurveKeyPair;
  /** The last publisher sequence applied, persisted across restarts (undefined: never synced). */
  lastSeq: number | undefined;
  saveSeq: (seq: number) => void;
  /** Applies one signed event (checklist, then action); resolves once it is handed to the action. */
  onEvent: (payload: Buffer, signature: Buffer, source: "live" | "snapshot") => Promise<void>;
  /**
   * An expiry the publisher announced (a holder expired, or its origin was purged): unsigned, so
   * it may lift only a hold under that very event id.
   */
  onExpire?: (expiry: Expiry) => Promise<void>;
  logger: Logger;
  metrics: Metrics;
  /** The daemon's: once it fires, no snapshot is asked again and no back-off is waited out. */
  signal?: AbortSignal;
  /** Per reply message of a snapshot, i.e. between two chunks, not for all of it (default 5 s). */
  snapshotTimeoutMs?: number;
  /** First delay before a failed snapshot is asked again, doubling to 30 s (default 500 ms). */
  snapshotRetryMs?: number;
}

/**
 * libzmq applies maxMessageSize to the frame on the wire: with CURVE that is the MESSAGE command,
 * 33 bytes (name, flags, nonce, MAC) more than the frame we send (measured with libzmq 4.3). A limit
 * of exactly the largest frame would break the connection on the largest message.
 */
const CURVE_FRAME_OVERHEAD = 64;
/**
 * Chunks are applied as they come, so memory does not grow with a snapshot; the limit only ends a
 * stream that would never end (a broken or hostile publisher).
 */
const MAX_SNAPSHOT_ENTRIES = 5_000_000;
const MAX_RETRY_MS = 30_000;

interface Snapshot {
  seq: number;
  count: number;
}

type Attempt = ({ type: "done" } & Snapshot) | { type: "busy"; retryAfterMs: number };

/**
 * Follows one publisher with the Clone pattern (ZeroMQ Guide ch. 5): subscribe first, then fetch
 * a snapshot of the active bans with the publisher sequence number it matches. A gap in the
 * sequence (PUB drops at its high-water mark, reconnects, a publisher restart that reset its
 * state), also seen through the publisher's heartbeats, triggers a new snapshot. Events are
 * de-duplicated by id downstream, so a repeated snapshot is harmless.
 *
 * The snapshot streams in chunks, each applied as it arrives, and live updates are applied as they
 * arrive too, also while a snapshot is pending: a large active set must not hold back new bans.
 * What the Clone pattern's buffer did is kept by two rules: the numbers of the live messages are
 * checked against the snapshot's end marker (every one after it must have been seen, else another
 * round), and an older ban in the snapshot does not undo a live unban of its origin, which the
 * checklist enforces (a ban older than an unban seen from the same origin is superseded).
 *
 * Invariant: events reach `onEvent` one at a time, in arrival order (one chain serialises live
 * messages and snapshot chunks), and `lastSeq` only moves to a number whose state is applied.
 */
export class PublisherReceiver {
  private sub: zmq.Subscriber | undefined;
  private dealer: zmq.Dealer | undefined;
  private closing: Promise<void> | undefined;
  private readonly abort = new AbortController();
  /** Fired by `close()` or by the daemon. */
  private readonly stop: AbortSignal;
  private lastSeq: number | undefined;
  /** While a snapshot is being fetched: the numbers of the live messages applied meanwhile. */
  private live: SeqRuns | undefined;
  private syncing: Promise<void> | undefined;
  /** Asked to resynchronise while a snapshot was being fetched, or it left a gap: another round. */
  private again = false;
  private readonly queue = new SerialQueue();
  private readonly log: Logger;
  private readonly problems: LimitedLog;
  private readonly loops: Promise<void>[] = [];
  private handshakes: HandshakeWatch | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: ReceiverOptions) {
    this.lastSeq = o.lastSeq;
    this.log = o.logger.child({ component: "receiver", publisher: o.feed });
    this.problems = new LimitedLog(this.log, new RateLimitedLog(60_000, 1));
    this.stop = o.signal ? AbortSignal.any([o.signal, this.abort.signal]) : this.abort.signal;
  }

  /** Whether the publisher's handshake has completed on the feed connection. */
  get connected(): boolean {
    return this.handshakes?.connected ?? false;
  }

  start(): void {
    const sub = createClientSocket("subscriber", {
      identity: this.o.identity,
      serverKey: this.o.serverKey,
      maxMessageSize: MAX_FEED_FRAME_BYTES + CURVE_FRAME_OVERHEAD,
    });
    sub.subscribe(TOPIC_UPDATE);
    sub.connect(this.o.feed);
    this.sub = sub;
    const handshakes = new HandshakeWatch({
      role: "subscriber",
      serverKey: this.o.serverKey,
      onNews: (news) => this.onHandshake(sub, news),
    });
    this.handshakes = handshakes;
    this.loops.push(handshakes.watch(sub), this.receive(sub));
  }

  /** Ends the loops, a snapshot in flight and its back-off; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.abort.abort();
      clearTimeout(this.reconnectTimer);
      this.sub?.close();
      this.dealer?.close();
      await Promise.allSettled(this.loops);
      await this.syncing;
      await this.queue.idle();
    })();
    return this.closing;
  }

  /** Diagnostics a fleet operator needs: our key refused, the publisher's key not matching, no route. */
  private onHandshake(sub: zmq.Subscriber, news: HandshakeNews): void {
    switch (news.type) {
      case "connected":
        this.log.info("connected");
        void this.serial(async () => {
          this.resync("connected");
        });
        break;
      case "disconnected":
        this.log.info("disconnected");
        break;
      case "refused":
        this.problem(news.problem, news.fields);
        // libzmq ends a session after a ZAP denial and never retries: reconnect ourselves, with
        // back-off, so a key accepted later recovers without a restart.
        this.reconnectLater(sub);
        break;
      case "mismatch":
        // libzmq would retry every second forever: back off instead.
        this.problem(news.problem, news.fields);
        this.reconnectLater(sub);
        break;
      default:
        this.problem(news.problem, news.fields);
    }
  }

  /** Disconnects now and connects again after a back-off that doubles with each failure, to 60 s. */
  private reconnectLater(sub: zmq.Subscriber): void {
    if (this.reconnectTimer) return;
    try {
      sub.disconnect(this.o.feed);
    } catch {
      // Already gone (libzmq ended the session): connect again anyway.
    }
    const delay = Math.min(60_000, 1000 * 2 ** Math.min((this.handshakes?.failures ?? 1) - 1, 6));
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.stop.aborted && !sub.closed) sub.connect(this.o.feed);
    }, delay);
    this.reconnectTimer.unref();
  }

  /**
   * When the feed last delivered anything (a heartbeat, every few seconds, at least), or when the
   * receiver started: its age is what `heartbeat_age_seconds` alerts on, a silent publisher.
   */
  heardAt = Date.now();

  private async receive(sub: zmq.Subscriber): Promise<void> {
    try {
      for await (const frames of sub) {
        this.heardAt = Date.now();
        const decoded = decodeFeed(frames);
        if (!decoded.ok) {
          this.o.metrics.inc("events_dropped_total", { reason: decoded.reason });
          this.problem("malformed message from the publisher dropped", { reason: decoded.reason });
          continue;
        }
        await this.serial(() => this.handle(decoded.message));
      }
    } catch (error) {
      if (!this.stop.aborted) this.log.error({ err: (error as Error).message }, "receive loop failed");
    }
  }

  /** Runs `task` after everything queued before it; a failure is logged, never breaks the chain. */
  private serial(task: () => Promise<void>): Promise<void> {
    return this.queue.run(task).catch((error: Error) => {
      this.o.metrics.inc("receive_failures_total", { stage: "receiver" });
      this.log.error({ err: error.message }, "applying from the publisher failed");
    });
  }

  /** One feed message, in order; only ever called through `serial`. */
  private async handle(message: FeedMessage): Promise<void> {
    if (this.live) {
      // A heartbeat carries no state; the first one after the snapshot is checked again.
      if (message.type === "heartbeat") return;
      this.live.add(message.seq);
      if (message.type === "update") await this.deliver(message.payload, message.signature, "live");
      return;
    }
    const last = this.lastSeq;
    if (message.type === "heartbeat") {
      if (last === undefined || message.seq !== last) {
        if (last !== undefined) this.o.metrics.inc("feed_gaps_total");
        this.resync(last === undefined ? "first heartbeat" : "heartbeat shows a gap");
      }
      return;
    }
    // A number at or below the last one means the publisher started over (its state was reset):
    // nothing it numbered before can be trusted to line up, so resynchronise as for a gap.
    if (last === undefined || message.seq !== last + 1) {
      this.o.metrics.inc("feed_gaps_total");
      this.resync(last !== undefined && message.seq <= last ? "sequence went back" : "gap");
      // The first live message of the new round: applied now, its number checked at the end.
      if (this.live) await this.handle(message);
      return;
    }
    if (message.type === "update") await this.deliver(message.payload, message.signature, "live");
    if (message.type === "expire") await this.expire(message);
    this.setSeq(message.seq);
  }

  private async expire(message: Expiry): Promise<void> {
    try {
      await this.o.onExpire?.({ jail: message.jail, ip: message.ip, id: message.id });
    } catch (error) {
      this.o.metrics.inc("receive_failures_total", { stage: "event" });
      this.problem("applying an expiry failed", { err: (error as Error).message });
    }
  }

  private async deliver(payload: Buffer, signature: Buffer, source: "live" | "snapshot"): Promise<void> {
    try {
      await this.o.onEvent(payload, signature, source);
    } catch (error) {
      // One event that cannot be applied (a state write failed) must not stop the feed.
      this.o.metrics.inc("receive_failures_total", { stage: "event" });
      this.problem("applying an event failed", { err: (error as Error).message, source });
    }
  }

  private setSeq(seq: number): void {
    this.lastSeq = seq;
    this.o.saveSeq(seq);
  }

  /** Starts a snapshot, or asks the running one for another round. */
  private resync(why: string): void {
    if (this.stop.aborted) return;
    this.live ??= new SeqRuns();
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.log.debug({ why }, "fetching snapshot");
    this.syncing = this.sync().finally(() => {
      this.syncing = undefined;
    });
  }

  private async sync(): Promise<void> {
    do {
      this.again = false;
      const snapshot = await this.fetchSnapshot();
      if (!snapshot) return;
      await this.serial(async () => this.finish(snapshot));
    } while (this.again && !this.stop.aborted);
  }

  /** After the end marker, in the chain: every live message after the snapshot's number was applied? */
  private async finish(snapshot: Snapshot): Promise<void> {
    if (this.stop.aborted) return;
    const through = this.live?.appliedThrough(snapshot.seq);
    if (through === undefined) {
      this.o.metrics.inc("feed_gaps_total");
      this.again = true;
      return;
    }
    this.live = undefined;
    this.setSeq(through);
    this.o.metrics.inc("snapshot_loads_total", { result: "loaded" });
    this.log.info({ bans: snapshot.count, seq: snapshot.seq, through }, "snapshot loaded");
  }

  private async applyEntries(entries: readonly SnapshotEntry[]): Promise<void> {
    for (const entry of entries) {
      if (this.stop.aborted) return;
      await this.deliver(entry.payload, entry.signature, "snapshot");
    }
  }

  /** Asks until it gets a complete snapshot; undefined once closed. */
  private async fetchSnapshot(): Promise<Snapshot | undefined> {
    const first = this.o.snapshotRetryMs ?? 500;
    for (let attempt = 0; !this.stop.aborted; attempt++) {
      let wait = Math.min(MAX_RETRY_MS, first * 2 ** Math.min(attempt, 10));
      try {
        const result = await this.requestSnapshot();
        if (!result) return undefined;
        if (result.type === "done") return result;
        // Busy: the publisher serves others first; its hint is a floor, our back-off still grows.
        this.o.metrics.inc("snapshot_loads_total", { result: "busy" });
        this.log.debug({ retryAfterMs: result.retryAfterMs }, "publisher busy: snapshot asked again later");
        wait = Math.min(MAX_RETRY_MS, Math.max(wait, result.retryAfterMs));
      } catch (error) {
        if (this.stop.aborted) return undefined;
        this.o.metrics.inc("snapshot_loads_total", { result: "failed" });
        this.problem("snapshot failed: retrying", { err: (error as Error).message });
      }
      if (!(await sleep(wait, this.stop))) return undefined;
    }
    return undefined;
  }

  /** One attempt: streams the chunks into the chain as they come; undefined once closed. */
  private async requestSnapshot(): Promise<Attempt | undefined> {
    const dealer = createClientSocket("dealer", {
      identity: this.o.identity,
      serverKey: this.o.serverKey,
      // A chunk of 200 entries is larger than the default frame limit.
      maxMessageSize: MAX_CHUNK_BYTES + CURVE_FRAME_OVERHEAD,
    });
    dealer.receiveTimeout = this.o.snapshotTimeoutMs ?? 5_000;
    this.dealer = dealer;
    try {
      dealer.connect(this.o.snapshot);
      // Live messages from now on may be newer than the snapshot; earlier ones are in it.
      this.live = new SeqRuns();
      await dealer.send(encodeSnapshotRequest());
      let count = 0;
      for (;;) {
        if (this.stop.aborted) return undefined;
        const reply = decodeSnapshotReply(await dealer.receive());
        if (!reply.ok) throw new Error(`malformed snapshot reply (${reply.reason})`);
        const message = reply.message;
        if (message.type === "busy") return message;
        if (message.type === "end") {
          if (message.count !== count) throw new Error("snapshot count mismatch");
          return { type: "done", seq: message.seq, count };
        }
        count += message.entries.length;
        if (count > MAX_SNAPSHOT_ENTRIES)
          throw new Error(`snapshot larger than ${MAX_SNAPSHOT_ENTRIES} bans`);
        // Credit at receipt: the next chunk travels while this one is applied, and no more than
        // the publisher's window ever waits here.
        await dealer.send(encodeCredit());
        await this.serial(() => this.applyEntries(message.entries));
      }
    } finally {
      this.dealer = undefined;
      dealer.close();
    }
  }

  private problem(message: string, fields: Record<string, unknown>): void {
    this.problems.warn(message, fields, message);
  }
}
