import { promises as fs } from "node:fs";
import path from "node:path";
import { type KeyEntry, pendingDir, pendingId } from "../keys/store.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { writePendingKey } from "./pending.js";
import { ROLE_OF_DOMAIN, type ZapDomain } from "./sockets.js";

export interface PendingRecorderOptions {
  logger: Logger;
  metrics: Metrics;
  /** At most this many keys under pending/ (files already there count); the oldest make room. */
  maxPending?: number | undefined;
  /** At most this many pending keys per peer address; its oldest makes room for a new one. */
  maxPendingPerAddress?: number | undefined;
  /** At most one pending/ write per key per this interval. */
  pendingWriteIntervalMs?: number | undefined;
  now: () => number;
}

interface PendingRecord {
  id: string;
  domain: ZapDomain;
  curvePublic: Uint8Array;
  address: string;
  firstSeen: string;
  lastSeen: string;
  attempts: number;
  /** `now()` of the last attempt: the record least recently seen makes room first. */
  seenAt: number;
  /** `now()` of the last write started; -Infinity before the first. */
  lastWrite: number;
  /** `now()` when the last write finished (or failed). */
  settled: number;
  writing: boolean;
  /** Whether a file from an earlier run was merged (first-seen, attempts) already. */
  merged: boolean;
}

/**
 * Records unknown keys that tried to connect under keys/pending/, for `f2bz keys pending|accept`.
 * Threat: a scanner cycling keys would fill the disk, so the number of files and the write rate
 * per key are bounded; and it would fill those slots so that a genuine new node is never
 * recorded, so a full pending/ makes room by dropping its least recently seen key, and one address
 * holds only a few slots. pending/ is bookkeeping: an error here is logged, never thrown.
 */
export class PendingRecorder {
  private readonly pending = new Map<string, PendingRecord>();
  /** Files under pending/ by id, with their mtime: the last-seen of a record from an earlier run. */
  private pendingOnDisk = new Map<string, number>();
  private readonly writes = new Set<Promise<void>>();
  private readonly removals = new Map<string, Promise<void>>();
  private readonly errorLog: LimitedLog;
  private readonly dropLog: LimitedLog;
  private readonly now: () => number;

  constructor(
    private readonly keysDir: string,
    private readonly options: PendingRecorderOptions,
  ) {
    this.now = options.now;
    this.errorLog = new LimitedLog(options.logger, new RateLimitedLog(60_000, 1));
    this.dropLog = new LimitedLog(options.logger, new RateLimitedLog(60_000, 1));
  }

  /**
   * Records a key seen at a handshake; returns at once, the write runs in the background. `known`
   * is its authorized entry in the other role, if any.
   */
  record(domain: ZapDomain, address: string, curvePublic: Uint8Array, known: KeyEntry | undefined): void {
    const id = pendingId(curvePublic);
    const now = this.now();
    let record = this.pending.get(id);
    if (!record) {
      if (!this.pendingOnDisk.has(id) && !this.makeRoom(address)) {
        this.options.metrics.inc("pending_keys_total", { result: "dropped" });
        this.dropLog.warn(
          "limit",
          { dir: pendingDir(this.keysDir) },
          "pending keys limit reached, key dropped",
        );
        return;
      }
      const seen = new Date(now).toISOString();
      record = {
        id,
        domain,
        curvePublic: Uint8Array.from(curvePublic),
        address: "",
        firstSeen: seen,
        lastSeen: seen,
        seenAt: now,
        attempts: 0,
        lastWrite: Number.NEGATIVE_INFINITY,
        settled: Number.NEGATIVE_INFINITY,
        writing: false,
        merged: false,
      };
      this.pending.set(id, record);
    }
    record.attempts++;
    record.address = address;
    record.lastSeen = new Date(now).toISOString();
    record.seenAt = now;
    if (record.writing || now - record.lastWrite < (this.options.pendingWriteIntervalMs ?? 5_000)) return;
    record.lastWrite = now;
    record.writing = true;
    // After an eviction of the same id still in flight, so that it cannot delete this write.
    const write = (this.removals.get(id) ?? Promise.resolve())
      .then(() => writePendingKey(this.keysDir, record, ROLE_OF_DOMAIN[record.domain], known))
      .then(() => {
        this.options.metrics.inc("pending_keys_total", { result: "written" });
        this.pendingOnDisk.set(record.id, record.seenAt);
      })
      .catch((error: unknown) => {
        this.options.metrics.inc("pending_keys_total", { result: "write-failed" });
        this.options.logger.error({ err: error, id: record.id }, "cannot record pending key");
      })
      .finally(() => {
        record.writing = false;
        record.settled = this.now();
        this.writes.delete(write);
      });
    this.writes.add(write);
  }

  /** Waits for the pending/ writes in flight. */
  async flush(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes]);
  }

  /** Reads pending/ as it is on disk; when it cannot be read, the last listing stands. */
  async refresh(): Promise<void> {
    const started = this.now();
    try {
      this.pendingOnDisk = await pendingFiles(this.keysDir);
    } catch (error) {
      this.options.metrics.inc("pending_keys_total", { result: "unreadable" });
      const text = error instanceof Error ? error.message : String(error);
      this.errorLog.error(text, { error: text }, "cannot list pending keys");
      return;
    }
    this.prunePending(started);
  }

  private pendingCount(): number {
    let count = this.pendingOnDisk.size;
    for (const id of this.pending.keys()) if (!this.pendingOnDisk.has(id)) count++;
    return count;
  }

  /**
   * Room for a new pending key from `address`: the address's least recently seen key goes when it
   * holds its share, then the least recently seen of all while pending/ is full. A record being
   * written is never chosen; false when nothing can go.
   */
  private makeRoom(address: string): boolean {
    const ofAddress = [...this.pending.values()].filter((r) => r.address === address && !r.writing);
    const heldByAddress = [...this.pending.values()].filter((r) => r.address === address).length;
    if (heldByAddress >= (this.options.maxPendingPerAddress ?? 4)) {
      const oldest = ofAddress.sort((a, b) => a.seenAt - b.seenAt)[0];
      if (!oldest) return false;
      this.evict(oldest.id);
    }
    while (this.pendingCount() >= (this.options.maxPending ?? 100)) {
      let oldest: { id: string; seenAt: number } | undefined;
      for (const r of this.pending.values()) {
        if (!r.writing && (!oldest || r.seenAt < oldest.seenAt)) oldest = r;
      }
      for (const [id, mtime] of this.pendingOnDisk) {
        // Only the publisher's own records: a file an operator put there is not ours to delete.
        if (!this.pending.has(id) && PENDING_ID.test(id) && (!oldest || mtime < oldest.seenAt)) {
          oldest = { id, seenAt: mtime };
        }
      }
      if (!oldest) return false;
      this.evict(oldest.id);
    }
    return true;
  }

  private evict(id: string): void {
    this.pending.delete(id);
    this.pendingOnDisk.delete(id);
    this.options.metrics.inc("pending_keys_total", { result: "evicted" });
    const removal = fs
      .rm(path.join(pendingDir(this.keysDir), `${id}.key`), { force: true })
      .catch((error: unknown) => this.options.logger.error({ err: error, id }, "cannot remove pending key"))
      .finally(() => {
        if (this.removals.get(id) === removal) this.removals.delete(id);
        this.writes.delete(removal);
      });
    this.removals.set(id, removal);
    this.writes.add(removal);
  }

  /** Forgets records whose file is gone (accepted or deleted) once their last write has landed. */
  private prunePending(listedAt: number): void {
    for (const [id, record] of this.pending) {
      if (!this.pendingOnDisk.has(id) && !record.writing && record.settled < listedAt) {
        this.pending.delete(id);
      }
    }
  }
}

const PENDING_ID = /^[0-9a-f]{16}$/;

/** Files under pending/ by id, with their mtime in ms. */
async function pendingFiles(keysDir: string): Promise<Map<string, number>> {
  const dir = pendingDir(keysDir);
  let names: string[];
  try {
    names = (await fs.readdir(dir)).filter((n) => n.endsWith(".key"));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw error;
  }
  const files = new Map<string, number>();
  for (const name of names) {
    const mtime = await fs.lstat(path.join(dir, name)).then(
      (st) => st.mtimeMs,
      () => undefined,
    );
    if (mtime !== undefined) files.set(name.slice(0, -".key".length), mtime);
  }
  return files;
}
