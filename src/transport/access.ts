import {
  activeEntries,
  directorySignature,
  isRevoked as isRevokedIn,
  type KeyEntry,
  type KeySet,
  keyHex,
  loadKeySet,
  type Role,
  revokedDir,
  roleDir,
  type SkippedEntry,
} from "../keys/store.js";
import type { Logger } from "../logging.js";
import { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { SerialQueue } from "../toolkit/serial-queue.js";
import { PendingRecorder } from "./pending-recorder.js";
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

export class AccessControl implements ZapRegistry {
  private set: KeySet;
  private index: Index;
  private skippedEntries: SkippedEntry[] = [];
  private signature = "";
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly errorLog: LimitedLog;
  private readonly skipLog: LimitedLog;
  private readonly recorder: PendingRecorder;
  /** Loads, polls and close run one at a time. */
  private readonly loads = new SerialQueue();
  private timer: NodeJS.Timeout | undefined;
  private isClosed = false;

  private constructor(
    readonly keysDir: string,
    private readonly options: AccessControlOptions,
    loaded: { set: KeySet; signature: string },
  ) {
    this.metrics = options.metrics ?? new Metrics("publisher");
    this.log = options.logger.child({ component: "access" });
    this.errorLog = new LimitedLog(this.log, new RateLimitedLog(60_000, 1));
    this.skipLog = new LimitedLog(this.log, new RateLimitedLog(300_000, 1));
    this.recorder = new PendingRecorder(keysDir, {
      logger: this.log,
      metrics: this.metrics,
      now: options.now ?? Date.now,
      maxPending: options.maxPending,
      maxPendingPerAddress: options.maxPendingPerAddress,
      pendingWriteIntervalMs: options.pendingWriteIntervalMs,
    });
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
    await access.recorder.refresh();
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

  /** The entries the last load left out, and why. */
  get skipped(): readonly SkippedEntry[] {
    return this.skippedEntries;
  }

  /** Loads the directory now, whether or not it changed. Serialised with the poller. */
  reload(): Promise<ReloadResult> {
    return this.loads.run(() => this.load());
  }

  /** Records an unknown key under pending/ (PendingRecorder); called from the ZAP handler. */
  readonly recordUnknown = (domain: ZapDomain, address: string, curvePublic: Uint8Array): void => {
    if (this.isClosed) return;
    this.recorder.record(domain, address, curvePublic, this.index.known.get(keyHex(curvePublic)));
  };

  /** Waits for the pending/ writes in flight. */
  flushPending(): Promise<void> {
    return this.recorder.flush();
  }

  /** Stops polling and waits for background writes. Idempotent. */
  async close(): Promise<void> {
    this.isClosed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.loads.idle();
    await this.recorder.flush();
  }

  private schedule(): void {
    const pollMs = this.options.pollMs ?? 500;
    if (this.isClosed || pollMs <= 0) return;
    this.timer = setTimeout(() => {
      void this.loads.run(() => this.poll()).finally(() => this.schedule());
    }, pollMs);
    // The sockets keep the process alive; a pending poll must not delay exit.
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    if (this.isClosed) return;
    try {
      if ((await directorySignature(watchedDirs(this.keysDir))) !== this.signature) await this.load();
      await this.recorder.refresh();
    } catch (error) {
      this.reportError(error, "cannot poll the key directory");
    }
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
    this.errorLog.error(text, { error: text }, message);
  }

  /** Every skipped entry is counted on each load and logged, at most once per file every 5 min. */
  private reportSkipped(skipped: SkippedEntry[]): void {
    this.skippedEntries = skipped;
    if (skipped.length > 0) this.metrics.inc("keys_skipped_total", skipped.length);
    for (const entry of skipped) {
      this.skipLog.warn(
        `${entry.file}\n${entry.reason}`,
        { file: entry.file, reason: entry.reason },
        "key skipped",
      );
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
