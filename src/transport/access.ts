import { promises as fs } from "node:fs";
import path from "node:path";
import {
  activeEntries,
  directorySignature,
  isRevoked as isRevokedIn,
  type KeyEntry,
  type KeySet,
  keyHex,
  loadKeySet,
  pendingDir,
  pendingId,
  type Role,
  revokedDir,
  roleDir,
  type SkippedEntry,
} from "../keys/store.js";
import { type Logger, RateLimitedLog } from "../logging.js";
import { Metrics } from "../metrics/registry.js";
import { writePendingKey } from "./pending.js";
import { ZAP_DOMAINS, type ZapDomain } from "./sockets.js";
import type { ZapPeer, ZapRegistry } from "./zap.js";

/**
 * Who may enter which ZAP domain, read from the publisher's key directory (src/keys/store.ts):
 * authorized/monitors → "submit", authorized/subscribers → "feed", revoked/ wins everywhere.
 *
 * The ZAP handler calls `lookup` for every handshake, so the answer comes from memory. The directory
 * is polled and a change is loaded at once. Threat: a set kept whole because one entry is bad keeps
 * every revoked or removed key working for as long as the bad entry stays. So removals and
 * revocations always apply; a bad entry (a file others may write, unparseable, half-written, a
 * duplicate) is skipped, counted and logged until it is fixed, and revoked/ fails closed
 * (src/keys/store.ts). pending/ is bookkeeping: an error there never stops a load.
 *
 * When an authorized key disappears from a domain, `onRemoved(domain)` fires after the new set is
 * in place; the owner then re-binds that domain's endpoints so live sessions of the key end (ZAP
 * runs only at handshake).
 */
export const ROLE_OF_DOMAIN: Readonly<Record<ZapDomain, Role>> = { submit: "monitor", feed: "subscriber" };

export type ReloadResult =
  | { ok: true; removed: ZapDomain[]; skipped: SkippedEntry[] }
  | { ok: false; error: Error };

export interface AccessControlOptions {
  logger: Logger;
  metrics?: Metrics;
  /** How often the directory is checked for changes; 0 disables polling (call `reload()`). */
  pollMs?: number;
  /** At most this many keys under pending/ (files already there count); the oldest make room. */
  maxPending?: number;
  /** At most this many pending keys per peer address; its oldest makes room for a new one. */
  maxPendingPerAddress?: number;
  /** At most one pending/ write per key per this interval. */
  pendingWriteIntervalMs?: number;
  /** A key that was allowed in `domain` no longer is: re-bind that domain's endpoints. */
  onRemoved?: (domain: ZapDomain) => void;
  /** After every load attempt that found the directory changed. */
  onReload?: (result: ReloadResult) => void;
  now?: () => number;
}

interface Index {
  domains: Record<ZapDomain, Map<string, ZapPeer>>;
  revoked: Set<string>;
  /** Every authorized entry by curve key, to enrich a pending record of a key known elsewhere. */
  known: Map<string, KeyEntry>;
  /** Node id → verify key (hex) of every authorized, not revoked monitor: who may originate events. */
  origins: Map<string, string>;
  counts: { monitors: number; subscribers: number; revoked: number };
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

export class AccessControl implements ZapRegistry {
  private set: KeySet;
  private index: Index;
  private skippedEntries: SkippedEntry[] = [];
  private signature = "";
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly errorLog = new RateLimitedLog(60_000, 1);
  private readonly dropLog = new RateLimitedLog(60_000, 1);
  private readonly skipLog = new RateLimitedLog(300_000, 1);
  private readonly now: () => number;
  private readonly pending = new Map<string, PendingRecord>();
  /** Files under pending/ by id, with their mtime: the last-seen of a record from an earlier run. */
  private pendingOnDisk = new Map<string, number>();
  private readonly writes = new Set<Promise<void>>();
  private readonly removals = new Map<string, Promise<void>>();
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private isClosed = false;

  private constructor(
    readonly keysDir: string,
    private readonly options: AccessControlOptions,
    loaded: { set: KeySet; signature: string },
  ) {
    this.metrics = options.metrics ?? new Metrics("publisher");
    this.log = options.logger.child({ component: "access" });
    this.now = options.now ?? Date.now;
    this.set = loaded.set;
    this.index = buildIndex(loaded.set);
    this.signature = loaded.signature;
  }

  /**
   * Loads the directory and starts watching it. Bad entries are skipped and logged; only a revoked/
   * that cannot be listed refuses to start (what is revoked would be unknown).
   */
  static async open(keysDir: string, options: AccessControlOptions): Promise<AccessControl> {
    const signature = await directorySignature(watchedDirs(keysDir));
    const { set, skipped } = await loadKeySet(keysDir);
    const access = new AccessControl(keysDir, options, { set, signature });
    access.log.info({ ...access.index.counts, skipped: skipped.length }, "keys loaded");
    access.reportSkipped(skipped);
    await access.readPending();
    access.schedule();
    return access;
  }

  lookup(domain: ZapDomain, curvePublic: Uint8Array): ZapPeer | undefined {
    return this.index.domains[domain].get(keyHex(curvePublic));
  }

  /**
   * Whether an event's origin is an authorized, not revoked monitor: its node id and verify key must
   * be those of a file in authorized/monitors. The transport cannot tell which key sent a message,
   * so this is checked on the signed event, not the connection.
   */
  isAuthorizedOrigin(origin: string, verifyKey: Uint8Array): boolean {
    const expected = this.index.origins.get(origin);
    return expected !== undefined && expected === keyHex(verifyKey);
  }

  isRevoked(curvePublic: Uint8Array): boolean {
    return this.index.revoked.has(keyHex(curvePublic));
  }

  /** Active keys per role and revoked keys, for status and metrics. */
  get counts(): Readonly<Index["counts"]> {
    return this.index.counts;
  }

  /** The entries the last load left out, and why. */
  get skipped(): readonly SkippedEntry[] {
    return this.skippedEntries;
  }

  /** Loads the directory now, whether or not it changed. Serialised with the poller. */
  reload(): Promise<ReloadResult> {
    return this.serialise(() => this.load());
  }

  /**
   * Records an unknown key under pending/ for `f2bz keys pending|accept`. Called from the ZAP
   * handler: returns at once, the write runs in the background. Threat: a scanner cycling keys
   * would fill the disk, so the number of files and the write rate per key are bounded; and it
   * would fill those slots so that a genuine new node is never recorded, so a full pending/ makes
   * room by dropping its least recently seen key, and one address holds only a few slots.
   */
  readonly recordUnknown = (domain: ZapDomain, address: string, curvePublic: Uint8Array): void => {
    if (this.isClosed) return;
    const hex = keyHex(curvePublic);
    const id = pendingId(curvePublic);
    const now = this.now();
    let record = this.pending.get(id);
    if (!record) {
      if (!this.pendingOnDisk.has(id) && !this.makeRoom(address)) {
        this.metrics.inc("pending_keys_total", { result: "dropped" });
        const suppressed = this.dropLog.allow("limit");
        if (suppressed !== undefined) {
          this.log.warn(
            { dir: pendingDir(this.keysDir), suppressed },
            "pending keys limit reached, key dropped",
          );
        }
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
    const known = this.index.known.get(hex);
    // After an eviction of the same id still in flight, so that it cannot delete this write.
    const write = (this.removals.get(id) ?? Promise.resolve())
      .then(() => writePendingKey(this.keysDir, record, ROLE_OF_DOMAIN[record.domain], known))
      .then(() => {
        this.metrics.inc("pending_keys_total", { result: "written" });
        this.pendingOnDisk.set(record.id, record.seenAt);
      })
      .catch((error: unknown) => {
        this.metrics.inc("pending_keys_total", { result: "write-failed" });
        this.log.error({ err: error, id: record.id }, "cannot record pending key");
      })
      .finally(() => {
        record.writing = false;
        record.settled = this.now();
        this.writes.delete(write);
      });
    this.writes.add(write);
  };

  /** Waits for the pending/ writes in flight. */
  async flushPending(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes]);
  }

  /** Stops polling and waits for background writes. Idempotent. */
  async close(): Promise<void> {
    this.isClosed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.chain.catch(() => {});
    await this.flushPending();
  }

  private serialise<T>(task: () => Promise<T>): Promise<T> {
    const next = this.chain.then(task);
    this.chain = next.catch(() => {});
    return next;
  }

  private schedule(): void {
    const pollMs = this.options.pollMs ?? 500;
    if (this.isClosed || pollMs <= 0) return;
    this.timer = setTimeout(() => {
      void this.serialise(() => this.poll()).finally(() => this.schedule());
    }, pollMs);
    // The sockets keep the process alive; a pending poll must not delay exit.
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    if (this.isClosed) return;
    try {
      if ((await directorySignature(watchedDirs(this.keysDir))) !== this.signature) await this.load();
      await this.readPending();
    } catch (error) {
      this.reportError(error, "cannot poll the key directory");
    }
  }

  /** pending/ as it is on disk; when it cannot be read, the last listing stands. */
  private async readPending(): Promise<void> {
    const started = this.now();
    try {
      this.pendingOnDisk = await pendingFiles(this.keysDir);
    } catch (error) {
      this.metrics.inc("pending_keys_total", { result: "unreadable" });
      this.reportError(error, "cannot list pending keys");
      return;
    }
    this.prunePending(started);
  }

  private async load(): Promise<ReloadResult> {
    let result: ReloadResult;
    try {
      // Taken before reading: a change during the load shows up as a new signature next poll.
      const signature = await directorySignature(watchedDirs(this.keysDir));
      const { set, skipped } = await loadKeySet(this.keysDir, this.set);
      const next = buildIndex(set);
      const removed = removedDomains(this.index, next);
      this.set = set;
      this.index = next;
      this.signature = signature;
      this.log.info({ ...next.counts, removed, skipped: skipped.length }, "keys reloaded");
      this.metrics.inc("key_reloads_total", { result: "ok" });
      this.reportSkipped(skipped);
      result = { ok: true, removed, skipped };
    } catch (error) {
      // Only a fault of the process itself gets here: loadKeySet never fails for an entry.
      this.metrics.inc("key_reloads_total", { result: "failed" });
      this.reportError(error, "key directory not reloaded");
      result = { ok: false, error: error instanceof Error ? error : new Error(String(error)) };
    }
    if (result.ok) {
      for (const domain of result.removed) this.notify(() => this.options.onRemoved?.(domain));
    }
    this.notify(() => this.options.onReload?.(result));
    return result;
  }

  private notify(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.log.error({ err: error }, "access change listener failed");
    }
  }

  private reportError(error: unknown, message: string): void {
    const text = error instanceof Error ? error.message : String(error);
    const suppressed = this.errorLog.allow(text);
    if (suppressed !== undefined) this.log.error({ error: text, suppressed }, message);
  }

  /** Every skipped entry is counted on each load and logged, at most once per file every 5 min. */
  private reportSkipped(skipped: SkippedEntry[]): void {
    this.skippedEntries = skipped;
    if (skipped.length > 0) this.metrics.inc("keys_skipped_total", skipped.length);
    for (const entry of skipped) {
      const suppressed = this.skipLog.allow(`${entry.file}\n${entry.reason}`);
      if (suppressed !== undefined) {
        this.log.warn({ file: entry.file, reason: entry.reason, suppressed }, "key skipped");
      }
    }
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
    this.metrics.inc("pending_keys_total", { result: "evicted" });
    const removal = fs
      .rm(path.join(pendingDir(this.keysDir), `${id}.key`), { force: true })
      .catch((error: unknown) => this.log.error({ err: error, id }, "cannot remove pending key"))
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

function buildIndex(set: KeySet): Index {
  const peers = (role: Role) =>
    new Map(activeEntries(set, role).map((e) => [keyHex(e.curvePublic), { nodeId: e.nodeId, name: e.id }]));
  const authorized = [...set.monitors, ...set.subscribers];
  const known = new Map(authorized.map((e) => [keyHex(e.curvePublic), e]));
  // An authorized file of a revoked node (same verify key, another CURVE key) is revoked too.
  const revoked = [...set.revoked, ...authorized.filter((e) => isRevokedIn(set, e))];
  const domains = { submit: peers("monitor"), feed: peers("subscriber") };
  const origins = new Map(
    activeEntries(set, "monitor").flatMap((e) =>
      e.signPublic ? [[e.nodeId, keyHex(e.signPublic)] as const] : [],
    ),
  );
  return {
    domains,
    origins,
    revoked: new Set(revoked.map((e) => keyHex(e.curvePublic))),
    known,
    counts: { monitors: domains.submit.size, subscribers: domains.feed.size, revoked: set.revoked.length },
  };
}

/** Domains in which some key was allowed before and is not now (or now maps to another node). */
function removedDomains(before: Index, after: Index): ZapDomain[] {
  const removed: ZapDomain[] = [];
  for (const domain of ZAP_DOMAINS) {
    for (const [hex, peer] of before.domains[domain]) {
      if (after.domains[domain].get(hex)?.nodeId !== peer.nodeId) {
        removed.push(domain);
        break;
      }
    }
  }
  return removed;
}

const watchedDirs = (keysDir: string): string[] => [
  roleDir(keysDir, "monitor"),
  roleDir(keysDir, "subscriber"),
  revokedDir(keysDir),
];

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
