import type * as zmq from "zeromq";
import type { Counters, Logger } from "../logging.js";
import { RateLimitedLog } from "../logging.js";
import {
  decodeFeed,
  decodeSnapshotReply,
  encodeSnapshotRequest,
  type FeedMessage,
  type SnapshotEntry,
  TOPIC_UPDATE,
} from "../protocol/feed.js";
import { type CurveKeyPair, createClientSocket } from "../transport/sockets.js";

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
  logger: Logger;
  counters: Counters;
  snapshotTimeoutMs?: number;
}

/**
 * Follows one publisher with the Clone pattern (ZeroMQ Guide ch. 5): subscribe first, then fetch
 * a snapshot of the active bans with the publisher sequence number it matches, apply it, then the
 * updates buffered meanwhile that are newer. Any gap in the sequence (PUB drops at its high-water
 * mark, reconnects, a publisher restart), also seen through the publisher's heartbeats, triggers a
 * new snapshot. Events are de-duplicated by id downstream, so a repeated snapshot is harmless.
 */
export class PublisherReceiver {
  private sub: zmq.Subscriber | undefined;
  private closed = false;
  private lastSeq: number | undefined;
  /** While a snapshot is being fetched, live messages wait here. */
  private buffer: FeedMessage[] | undefined;
  private syncing: Promise<void> | undefined;
  private readonly log: Logger;
  private readonly problemLog = new RateLimitedLog(60_000, 1);
  private readonly loops: Promise<void>[] = [];
  private authFailures = 0;

  constructor(private readonly o: ReceiverOptions) {
    this.lastSeq = o.lastSeq;
    this.log = o.logger.child({ component: "receiver", publisher: o.feed });
  }

  start(): void {
    const sub = createClientSocket("subscriber", { identity: this.o.identity, serverKey: this.o.serverKey });
    sub.subscribe(TOPIC_UPDATE);
    sub.connect(this.o.feed);
    this.sub = sub;
    this.loops.push(this.watch(sub), this.receive(sub));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sub?.close();
    await Promise.allSettled(this.loops);
    await this.syncing;
  }

  /** Diagnostics a fleet operator needs: our key refused, or the publisher's key not matching. */
  private async watch(sub: zmq.Subscriber): Promise<void> {
    let otherFailures = 0;
    try {
      for await (const event of sub.events) {
        if (event.type === "handshake") {
          otherFailures = 0;
          this.authFailures = 0;
          this.log.info("connected");
          this.resync("connected");
        } else if (event.type === "handshake:error:auth") {
          this.authFailures++;
          this.problem("publisher refused our key: is this node's .key in its authorized/subscribers?", {
            status: event.error.status,
          });
          // libzmq ends a session after a ZAP denial and never retries: reconnect ourselves, with
          // back-off, so a key accepted later recovers without a restart.
          this.reconnectLater(sub);
        } else if (event.type === "handshake:error:protocol") {
          this.problem("handshake with publisher failed", { code: event.error.code });
        } else if (event.type === "handshake:error:other") {
          if (++otherFailures === 3) {
            this.problem(
              "cannot complete a handshake with the publisher: wrong publisher key, or not reachable",
              {},
            );
          }
        } else if (event.type === "disconnect") {
          this.log.info("disconnected");
        }
      }
    } catch (error) {
      if (!this.closed) this.log.error({ err: (error as Error).message }, "event watch failed");
    }
  }

  private reconnectLater(sub: zmq.Subscriber): void {
    const delay = Math.min(60_000, 1000 * 2 ** Math.min(this.authFailures, 6));
    setTimeout(() => {
      if (this.closed || sub.closed) return;
      try {
        sub.disconnect(this.o.feed);
      } catch {
        // Already gone: connect again anyway.
      }
      sub.connect(this.o.feed);
    }, delay).unref();
  }

  private async receive(sub: zmq.Subscriber): Promise<void> {
    try {
      for await (const frames of sub) {
        const decoded = decodeFeed(frames);
        if (!decoded.ok) {
          this.o.counters.inc(`dropped.${decoded.reason}`);
          continue;
        }
        if (this.buffer) {
          this.buffer.push(decoded.message);
          continue;
        }
        await this.handle(decoded.message);
      }
    } catch (error) {
      if (!this.closed) this.log.error({ err: (error as Error).message }, "receive loop failed");
    }
  }

  private async handle(message: FeedMessage): Promise<void> {
    const last = this.lastSeq;
    if (message.type === "heartbeat") {
      if (last === undefined || message.seq !== last)
        this.resync(last === undefined ? "first heartbeat" : "gap");
      return;
    }
    if (last !== undefined && message.seq <= last) return;
    if (last === undefined || message.seq !== last + 1) {
      this.o.counters.inc("feed.gaps");
      this.resync("gap");
      this.buffer?.push(message);
      return;
    }
    await this.applyLive(message);
  }

  private async applyLive(message: FeedMessage): Promise<void> {
    if (message.type === "update") await this.o.onEvent(message.payload, message.signature, "live");
    // Expiries need no action: every applied ban carries its own expiry, enforced locally.
    this.setSeq(message.seq);
  }

  private setSeq(seq: number): void {
    this.lastSeq = seq;
    this.o.saveSeq(seq);
  }

  /** Starts a snapshot unless one is running; live messages are buffered until it ends. */
  private resync(why: string): void {
    if (this.syncing || this.closed) return;
    this.buffer = [];
    this.log.debug({ why }, "fetching snapshot");
    this.syncing = this.fetchSnapshot().finally(() => {
      this.syncing = undefined;
    });
  }

  private async fetchSnapshot(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      const result = await this.requestSnapshot().catch((error: Error) => {
        this.problem("snapshot failed: retrying", { err: error.message });
        return undefined;
      });
      if (result) {
        for (const entry of result.entries) await this.o.onEvent(entry.payload, entry.signature, "snapshot");
        const buffered = this.buffer ?? [];
        this.buffer = undefined;
        this.setSeq(result.seq);
        this.o.counters.inc("snapshot.loaded");
        this.log.info({ bans: result.entries.length, seq: result.seq }, "snapshot loaded");
        for (const message of buffered) await this.handle(message);
        return;
      }
      await new Promise((r) => setTimeout(r, Math.min(30_000, 500 * 2 ** attempt)));
    }
  }

  private async requestSnapshot(): Promise<{ seq: number; entries: SnapshotEntry[] } | undefined> {
    const dealer = createClientSocket("dealer", { identity: this.o.identity, serverKey: this.o.serverKey });
    dealer.receiveTimeout = this.o.snapshotTimeoutMs ?? 5_000;
    try {
      dealer.connect(this.o.snapshot);
      await dealer.send(encodeSnapshotRequest());
      const entries: SnapshotEntry[] = [];
      for (;;) {
        if (this.closed) return undefined;
        const reply = decodeSnapshotReply(await dealer.receive());
        if (!reply.ok) throw new Error(`malformed snapshot reply (${reply.reason})`);
        if (reply.message.type === "end") {
          if (reply.message.count !== entries.length) throw new Error("snapshot count mismatch");
          return { seq: reply.message.seq, entries };
        }
        entries.push(...reply.message.entries);
      }
    } finally {
      dealer.close();
    }
  }

  private problem(message: string, fields: Record<string, unknown>): void {
    const suppressed = this.problemLog.allow(message);
    if (suppressed !== undefined) this.log.warn({ ...fields, suppressed }, message);
  }
}
