import type { BanExecutor } from "./executor.js";

export type BanKind = "ban" | "unban";

/** One executor call: addresses of one kind for one jail. */
export interface Batch<T = undefined> {
  kind: BanKind;
  jail: string;
  ips: readonly string[];
  /** What each operation taken was pushed with, in push order (an address pushed twice is in `ips` once). */
  items: readonly T[];
}

/** Runs one batch; resolves with the count of addresses changed. */
export type RunBatch<T> = (batch: Batch<T>) => Promise<number>;

export interface BanQueueOptions<T = undefined> {
  /** Addresses per call (default 100). */
  batchSize?: number;
  /** Operations waiting, over all jails (default 10 000); more are refused and counted as dropped. */
  maxPending?: number;
  /** Calls in flight at once, 1 or 2 (default 2): each call is a Python process start. */
  concurrency?: number;
  /** A call that failed; its addresses are not retried here (the caller owns retries and state). */
  onError?: (error: unknown, batch: Batch<T>) => void;
  /** A call that succeeded, with what the executor returned (the count fail2ban changed). */
  onDone?: (batch: Batch<T>, count: number) => void;
}

interface Op<T> {
  kind: BanKind;
  ip: string;
  item: T;
}

/**
 * Feeds bans and unbans to fail2ban in batches. Invariants:
 * - for one jail and one address, operations reach the executor in the order they were pushed, and
 *   never two at once: a ban then an unban of the same address cannot swap places;
 * - operations on different addresses may be regrouped, so that bans and unbans of one jail each
 *   go out as few calls as possible (a burst pushed in one tick coalesces, and what arrives while
 *   calls are in flight waits for the next batch);
 * - at most `concurrency` calls in flight and `maxPending` operations waiting: memory stays bounded
 *   whatever the rate of events.
 * It feeds a `BanExecutor` (fail2ban-client, the ban-helper), or any function that runs a batch
 * with what each operation was pushed with (the exec action, one address per batch).
 */
/**
 * What a queue did: for logs and tests. A daemon counts what it exposes itself, in the callbacks
 * (`onDone`, `onError`) and from `push`'s answer.
 */
export interface QueueTally {
  /** fail2ban calls (batches) started, and those that failed. */
  calls: number;
  failed: number;
  /** Operations refused because the queue was closed, or full. */
  closed: number;
  dropped: Record<BanKind, number>;
  /** Addresses in calls that succeeded, and in calls that failed. */
  sent: Record<BanKind, number>;
  failedAddresses: Record<BanKind, number>;
}

export class BanQueue<T = undefined> {
  readonly tally: QueueTally = {
    calls: 0,
    failed: 0,
    closed: 0,
    dropped: { ban: 0, unban: 0 },
    sent: { ban: 0, unban: 0 },
    failedAddresses: { ban: 0, unban: 0 },
  };
  private readonly batchSize: number;
  private readonly maxPending: number;
  private readonly concurrency: number;
  private readonly waiting = new Map<string, Op<T>[]>();
  /** Addresses of each jail that are in a call in flight. */
  private readonly busy = new Map<string, Set<string>>();
  private pendingCount = 0;
  private running = 0;
  private scheduled = false;
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];

  private readonly run: RunBatch<T>;

  constructor(
    executor: BanExecutor | RunBatch<T>,
    private readonly options: BanQueueOptions<T> = {},
  ) {
    this.run =
      typeof executor === "function"
        ? executor
        : (batch) =>
            batch.kind === "ban"
              ? executor.ban(batch.jail, batch.ips)
              : executor.unban(batch.jail, batch.ips);
    this.batchSize = Math.max(1, options.batchSize ?? 100);
    this.maxPending = Math.max(1, options.maxPending ?? 10_000);
    this.concurrency = Math.min(2, Math.max(1, options.concurrency ?? 2));
  }

  /** Queues a ban; false when refused (queue full or closed), counted as `dropped` or `closed`. */
  ban(jail: string, ip: string, ...item: T extends undefined ? [] : [T]): boolean {
    return this.push("ban", jail, ip, ...item);
  }

  unban(jail: string, ip: string, ...item: T extends undefined ? [] : [T]): boolean {
    return this.push("unban", jail, ip, ...item);
  }

  push(kind: BanKind, jail: string, ip: string, ...[item]: T extends undefined ? [] : [T]): boolean {
    if (this.closed) {
      this.tally.closed++;
      return false;
    }
    if (this.pendingCount >= this.maxPending) {
      this.tally.dropped[kind]++;
      return false;
    }
    let ops = this.waiting.get(jail);
    if (!ops) {
      ops = [];
      this.waiting.set(jail, ops);
    }
    ops.push({ kind, ip, item: item as T });
    this.pendingCount++;
    this.schedule();
    return true;
  }

  /** Resolves once nothing waits and nothing is in flight, including what is pushed meanwhile. */
  flush(signal?: AbortSignal): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.idleWaiters.indexOf(done);
        if (i !== -1) this.idleWaiters.splice(i, 1);
        reject(signal?.reason);
      };
      const done = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.idleWaiters.push(done);
    });
  }

  /** Refuses new operations, then waits for the queued and in-flight ones. Idempotent. */
  close(signal?: AbortSignal): Promise<void> {
    this.closed = true;
    return this.flush(signal);
  }

  private idle(): boolean {
    return this.pendingCount === 0 && this.running === 0;
  }

  private schedule(): void {
    // A batch of one gains nothing from waiting for the tick: it goes at once, if there is room.
    if (this.batchSize === 1) {
      this.pump();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    // Whatever is pushed in the same tick joins the first batch.
    queueMicrotask(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.concurrency) {
      const batch = this.nextBatch();
      if (!batch) break;
      this.start(batch);
    }
    if (this.idle()) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Round-robin over jails, so that a flood into one jail does not starve another. */
  private nextBatch(): Batch<T> | undefined {
    for (const jail of [...this.waiting.keys()]) {
      const ops = this.waiting.get(jail)!;
      this.waiting.delete(jail);
      const batch = this.take(jail, ops);
      if (ops.length > 0) this.waiting.set(jail, ops);
      if (batch) return batch;
    }
    return undefined;
  }

  /**
   * Takes from `ops`, in order, addresses of the kind of the first one that may go: skipping an
   * address that is in flight, and one that an earlier operation of the other kind still holds back.
   */
  private take(jail: string, ops: Op<T>[]): Batch<T> | undefined {
    const blocked = new Set(this.busy.get(jail));
    const chosen = new Set<string>();
    const taken = new Set<Op<T>>();
    let kind: BanKind | undefined;
    for (const op of ops) {
      if (chosen.size >= this.batchSize) break;
      if (blocked.has(op.ip)) continue;
      kind ??= op.kind;
      if (op.kind !== kind) {
        blocked.add(op.ip);
        continue;
      }
      chosen.add(op.ip);
      taken.add(op);
    }
    if (!kind || taken.size === 0) return undefined;
    const rest = ops.filter((op) => !taken.has(op));
    ops.splice(0, ops.length, ...rest);
    this.pendingCount -= taken.size;
    return { kind, jail, ips: [...chosen], items: [...taken].map((op) => op.item) };
  }

  private start(batch: Batch<T>): void {
    this.running++;
    let busy = this.busy.get(batch.jail);
    if (!busy) {
      busy = new Set();
      this.busy.set(batch.jail, busy);
    }
    for (const ip of batch.ips) busy.add(ip);
    this.tally.calls++;
    void this.call(batch).finally(() => {
      this.running--;
      for (const ip of batch.ips) busy.delete(ip);
      if (busy.size === 0) this.busy.delete(batch.jail);
      this.pump();
    });
  }

  /** Never rejects: a failed call is counted and reported, a throwing callback is contained. */
  private async call(batch: Batch<T>): Promise<void> {
    let count: number;
    try {
      count = await this.run(batch);
    } catch (error) {
      this.tally.failed++;
      this.tally.failedAddresses[batch.kind] += batch.ips.length;
      try {
        this.options.onError?.(error, batch);
      } catch {}
      return;
    }
    this.tally.sent[batch.kind] += batch.ips.length;
    try {
      this.options.onDone?.(batch, count);
    } catch {}
  }
}
