import { setImmediate as yieldToLoop } from "node:timers/promises";
import { type Logger, untrusted } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import {
  decodeSnapshotRequest,
  encodeBusy,
  encodeChunk,
  encodeEnd,
  MAX_CHUNK_ENTRIES,
  SNAPSHOT_WINDOW,
  type SnapshotEntry,
} from "../protocol/snapshot.js";
import { LimitedLog } from "../toolkit/limited-log.js";
import { SerialQueue } from "../toolkit/serial-queue.js";
import { WakeUp } from "../toolkit/wake-up.js";
import { PeerBuckets, TokenBucket } from "./rate-limit.js";

/** A consistent view of the active set, read page by page (SnapshotReader). */
export interface SnapshotSource {
  readonly seq: number;
  /** True once a page came back short: nothing is left to read. */
  readonly exhausted: boolean;
  page(limit: number): SnapshotEntry[];
  close(): void;
}

/** Sends one message on the ROUTER, routing id first; resolves once handed to libzmq. */
export type Send = (frames: Buffer[]) => Promise<void>;

export interface SnapshotServerOptions {
  open: (now: number) => SnapshotSource;
  metrics: Metrics;
  logger: Logger;
  /** Streams in flight for all peers together (default 4): the global bound on snapshot work. */
  maxStreams?: number;
  /** A stream whose peer sends no credit for this long is dropped (default 30 s). */
  idleMs?: number;
  /** What `busy` tells a peer to wait before asking again (default 1 s). */
  busyRetryMs?: number;
  now?: () => number;
}

type Refusal = "in-flight" | "peer-rate" | "streams" | "global-rate";

interface Stream {
  credit: number;
  /** Woken by each credit the peer sends. */
  credited: WakeUp;
}

/**
 * Serves snapshots on the ROUTER: each one streamed from a cursor, a page read, encoded and sent
 * per credit the subscriber grants, yielding to the event loop after every page. A large active
 * set therefore costs the publisher one page of memory per stream and never a long blocking turn:
 * intake, the feed and heartbeats run between pages.
 *
 * Threat: an authorized subscriber (or a compromised one) asking in a loop, or asking from many
 * connections at once. Each peer (connection) has one stream in flight and a bucket of its own, so
 * it cannot starve the others; all peers together have `maxStreams` streams and a global bucket.
 * A request that is refused gets `busy`, never silence, so a well-behaved subscriber backs off.
 */
export class SnapshotServer {
  private readonly streams = new Map<string, Stream>();
  private readonly running = new Set<Promise<void>>();
  private readonly perPeer: PeerBuckets;
  private readonly global: TokenBucket;
  private readonly dropLog: LimitedLog;
  private readonly log: Logger;
  private readonly stopped = new AbortController();

  constructor(private readonly o: SnapshotServerOptions) {
    this.log = o.logger.child({ component: "snapshots" });
    this.dropLog = new LimitedLog(this.log);
    // A subscriber asks on start and after a gap: a few per peer in a burst, then one a second.
    this.perPeer = new PeerBuckets({ rate: 1, burst: 3, maxPeers: 4096 }, o.now);
    this.global = new TokenBucket(20, 40, o.now);
  }

  /** Streams in flight. */
  get active(): number {
    return this.streams.size;
  }

  /** One message from the ROUTER (routing id, then the frames); never waits for a stream. */
  handle(routingId: Uint8Array | undefined, frames: readonly Uint8Array[], send: Send): void {
    const request = decodeSnapshotRequest(frames);
    if (!request.ok || routingId === undefined || this.stopped.signal.aborted) {
      const reason = request.ok ? "frames" : request.reason;
      this.o.metrics.inc("snapshot_requests_dropped_total", { reason });
      this.dropLog.warn(reason, { reason: untrusted(reason) }, "snapshot request dropped");
      return;
    }
    const id = Buffer.from(routingId);
    const peer = id.toString("hex");
    if (request.message.type === "credit") {
      const stream = this.streams.get(peer);
      // A credit after the end (one per chunk, the last ones cross the end marker) is normal.
      if (!stream) return;
      // Capped: credit piled up in advance would let a peer make us queue the whole set again.
      stream.credit = Math.min(SNAPSHOT_WINDOW, stream.credit + 1);
      stream.credited.wake();
      return;
    }
    const refused = this.admit(peer);
    if (refused) {
      this.o.metrics.inc("snapshot_requests_busy_total", { limit: refused });
      this.log.debug({ reason: refused }, "snapshot request refused: busy");
      send([id, ...encodeBusy(this.o.busyRetryMs ?? 1_000)]).catch(() => {
        // The peer left or the socket is closing: it asks again, or is gone.
      });
      return;
    }
    const stream: Stream = { credit: SNAPSHOT_WINDOW, credited: new WakeUp() };
    this.streams.set(peer, stream);
    const run = this.stream(stream, id, send).finally(() => {
      this.streams.delete(peer);
      this.running.delete(run);
    });
    this.running.add(run);
  }

  /** Ends every stream (a stream waiting for credit ends at once) and waits for them; idempotent. */
  async close(): Promise<void> {
    this.stopped.abort();
    await Promise.allSettled([...this.running]);
  }

  /** Per peer first, so that one peer's flood is refused before it can drain the global limits. */
  private admit(peer: string): Refusal | undefined {
    if (this.streams.has(peer)) return "in-flight";
    if (!this.perPeer.take(peer)) return "peer-rate";
    if (this.streams.size >= (this.o.maxStreams ?? 4)) return "streams";
    if (!this.global.take()) return "global-rate";
    return undefined;
  }

  private async stream(stream: Stream, id: Buffer, send: Send): Promise<void> {
    let source: SnapshotSource | undefined;
    try {
      source = this.o.open(Date.now());
      let count = 0;
      while (!source.exhausted) {
        if (!(await this.credited(stream))) {
          if (!this.stopped.signal.aborted) this.o.metrics.inc("snapshots_total", { result: "abandoned" });
          return;
        }
        const page = source.page(MAX_CHUNK_ENTRIES);
        if (page.length === 0) break;
        stream.credit--;
        count += page.length;
        await send([Buffer.from(id), ...encodeChunk(page)]);
        // The next page waits for the next turn of the loop: everything else queued runs first.
        await yieldToLoop();
        if (this.stopped.signal.aborted) return;
      }
      await send([Buffer.from(id), ...encodeEnd(source.seq, count)]);
      this.o.metrics.inc("snapshots_total", { result: "served" });
      this.log.debug({ bans: count, seq: source.seq }, "snapshot served");
    } catch (error) {
      this.o.metrics.inc("snapshots_total", { result: "failed" });
      if (!this.stopped.signal.aborted)
        this.log.error({ err: (error as Error).message }, "snapshot stream failed");
    } finally {
      source?.close();
    }
  }

  /**
   * True once the stream has credit, waiting for the peer's next one if it has none; false after
   * `idleMs` without one, or on close. A wake left from a credit already counted is waited past.
   */
  private async credited(stream: Stream): Promise<boolean> {
    while (stream.credit === 0) {
      if (!(await stream.credited.wait(this.o.idleMs ?? 30_000, this.stopped.signal))) return false;
    }
    return !this.stopped.signal.aborted;
  }
}

/**
 * zeromq.js takes one send at a time per socket (another one meanwhile fails with EBUSY); streams
 * and `busy` replies share the ROUTER, so their sends are chained. A ROUTER without `mandatory`
 * never blocks, so the chain never waits on a slow peer.
 */
export function serialSender(socket: { send(frames: Buffer[]): Promise<void> }): Send {
  const sends = new SerialQueue();
  return (frames) => sends.run(() => socket.send(frames));
}
