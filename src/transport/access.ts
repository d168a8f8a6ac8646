import { promises as fs } from "node:fs";
import path from "node:path";
import {
  activeEntries,
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
} from "../keys/store.js";
import { Counters, type Logger, RateLimitedLog } from "../logging.js";
import { writePendingKey } from "./pending.js";
import { ZAP_DOMAINS, type ZapDomain } from "./sockets.js";
import type { ZapPeer, ZapRegistry } from "./zap.js";

/**
 * Who may enter which ZAP domain, read from the publisher's key directory (src/keys/store.ts):
 * authorized/monitors → "submit", authorized/subscribers → "feed", revoked/ wins everywhere.
 *
 * The ZAP handler calls `lookup` for every handshake, so the answer comes from memory. The directory
 * is polled; a change is loaded as a whole and swapped in only if every file parses, so an operator
 * copying a file (seen half-written) or a broken file never opens or closes anything: the previous
 * set keeps serving and the error is logged until the directory is fixed.
 *
 * When an authorized key disappears from a domain, `onRemoved(domain)` fires after the new set is
 * in place; the owner then re-binds that domain's endpoints so live sessions of the key end (ZAP
 * runs only at handshake).
 */
export const ROLE_OF_DOMAIN: Readonly<Record<ZapDomain, Role>> = { submit: "monitor", feed: "subscriber" };

export type ReloadResult = { ok: true; removed: ZapDomain[] } | { ok: false; error: Error };

export interface AccessControlOptions {
  logger: Logger;
  counters?: Counters;
  /** How often the directory is checked for changes; 0 disables polling (call `reload()`). */
  pollMs?: number;
  /** At most this many keys under pending/ (files already there count); others are dropped. */
  maxPending?: number;
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
  /** `now()` of the last write started; -Infinity before the first. */
  lastWrite: number;
  /** `now()` when the last write finished (or failed). */
  settled: number;
  writing: boolean;
  /** Whether a file from an earlier run was merged (first-seen, attempts) already. */
  merged: boolean;
}

export class AccessControl implements ZapRegistry {
  private index: Index;
  private signature = "";
  private readonly counters: Counters;
  private readonly log: Logger;
  private readonly errorLog = new RateLimitedLog(60_000, 1);
  private readonly dropLog = new RateLimitedLog(60_000, 1);
  private readonly now: () => number;
  private readonly pending = new Map<string, PendingRecord>();
  private pendingOnDisk = new Set<string>();
  private readonly writes = new Set<Promise<void>>();
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private isClosed = false;

  private constructor(
    readonly keysDir: string,
    private readonly options: AccessControlOptions,
    loaded: { set: KeySet; signature: string; pendingIds: Set<string> },
  ) {
    this.counters = options.counters ?? new Counters();
    this.log = options.logger.child({ component: "access" });
    this.now = options.now ?? Date.now;
    this.index = buildIndex(loaded.set);
    this.signature = loaded.signature;
    this.pendingOnDisk = loaded.pendingIds;
  }

  /** Loads the directory (a broken one refuses to start) and starts watching it. */
  static async open(keysDir: string, options: AccessControlOptions): Promise<AccessControl> {
    const signature = await directorySignature(keysDir);
    const set = await loadKeySet(keysDir);
    const access = new AccessControl(keysDir, options, {
      set,
      signature,
      pendingIds: await pendingIds(keysDir),
    });
    access.log.info(access.index.counts, "keys loaded");
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

  /** Loads the directory now, whether or not it changed. Serialised with the poller. */
  reload(): Promise<ReloadResult> {
    return this.serialise(() => this.load());
  }

  /**
   * Records an unknown key under pending/ for `f2bz keys pending|accept`. Called from the ZAP
   * handler: returns at once, the write runs in the background. Threat: a scanner cycling keys
   * would fill the disk, so the number of files and the write rate per key are bounded.
   */
  readonly recordUnknown = (domain: ZapDomain, address: string, curvePublic: Uint8Array): void => {
    if (this.isClosed) return;
    const hex = keyHex(curvePublic);
    const id = pendingId(curvePublic);
    const now = this.now();
    let record = this.pending.get(id);
    if (!record) {
      if (!this.pendingOnDisk.has(id) && this.pendingCount() >= (this.options.maxPending ?? 100)) {
        this.counters.inc("access.pending_dropped");
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
    if (record.writing || now - record.lastWrite < (this.options.pendingWriteIntervalMs ?? 5_000)) return;
    record.lastWrite = now;
    record.writing = true;
    const known = this.index.known.get(hex);
    const write = writePendingKey(this.keysDir, record, ROLE_OF_DOMAIN[record.domain], known)
      .then(() => {
        this.counters.inc("access.pending_written");
        this.pendingOnDisk.add(record.id);
      })
      .catch((error: unknown) => {
        this.counters.inc("access.pending_write_failed");
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
      const started = this.now();
      this.pendingOnDisk = await pendingIds(this.keysDir);
      this.prunePending(started);
      if ((await directorySignature(this.keysDir)) !== this.signature) await this.load();
    } catch (error) {
      this.reportError(error, "cannot read the key directory, keeping the previous keys");
    }
  }

  private async load(): Promise<ReloadResult> {
    let result: ReloadResult;
    try {
      // Taken before reading: a change during the load shows up as a new signature next poll.
      const signature = await directorySignature(this.keysDir);
      const next = buildIndex(await loadKeySet(this.keysDir));
      const removed = removedDomains(this.index, next);
      this.index = next;
      this.signature = signature;
      this.log.info({ ...next.counts, removed }, "keys reloaded");
      this.counters.inc("access.reloads");
      result = { ok: true, removed };
    } catch (error) {
      this.counters.inc("access.reload_failed");
      this.reportError(error, "key directory not reloaded, keeping the previous keys");
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

  private pendingCount(): number {
    let count = this.pendingOnDisk.size;
    for (const id of this.pending.keys()) if (!this.pendingOnDisk.has(id)) count++;
    return count;
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

/**
 * Names, inode, size, mtime and mode of every key file: cheap to take every poll, and it changes
 * whenever a file is added, removed, renamed or rewritten (rename-over changes the inode).
 */
async function directorySignature(keysDir: string): Promise<string> {
  const parts: string[] = [];
  for (const dir of [roleDir(keysDir, "monitor"), roleDir(keysDir, "subscriber"), revokedDir(keysDir)]) {
    let names: string[];
    try {
      names = (await fs.readdir(dir)).filter((n) => n.endsWith(".key")).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      parts.push(`${dir} absent`);
      continue;
    }
    for (const name of names) {
      const file = path.join(dir, name);
      try {
        const st = await fs.lstat(file, { bigint: true });
        parts.push(`${file} ${st.ino} ${st.size} ${st.mtimeNs} ${st.mode}`);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
        parts.push(`${file} gone`);
      }
    }
  }
  return parts.join("\n");
}

async function pendingIds(keysDir: string): Promise<Set<string>> {
  try {
    const names = await fs.readdir(pendingDir(keysDir));
    return new Set(names.filter((n) => n.endsWith(".key")).map((n) => n.slice(0, -".key".length)));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return new Set();
    throw error;
  }
}
