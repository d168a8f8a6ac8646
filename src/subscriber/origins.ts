import { directorySignature, scanEntries } from "../keys/store.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { SerialQueue } from "../toolkit/serial-queue.js";
import { sleep } from "../toolkit/wake-up.js";

export interface OriginsOptions {
  logger: Logger;
  metrics: Metrics;
  /** How often the directory is checked for changes; 0 disables polling (call `reload()`). */
  pollMs?: number;
  /** The daemon's: once it fires, the directory is no longer polled. */
  signal?: AbortSignal;
}

/**
 * `subscriber.origins`: the monitors this subscriber itself trusts to originate events. Threat: a
 * monitor key removed from the directory (a compromised node) that keeps its events applied until
 * a restart. So the directory is polled like the publisher's: removals apply at once, a bad entry
 * (a file others may write, unparseable) is skipped and logged, and a directory others may write
 * or that cannot be read trusts nobody.
 */
export class OriginsWatcher {
  private trusted: ReadonlySet<string> = new Set();
  private signature = "";
  private polling: Promise<void> = Promise.resolve();
  /** Loads one at a time: the poller's and `reload()`'s. */
  private readonly loads = new SerialQueue();
  private readonly closed = new AbortController();
  /** Fired by `close()` or by the daemon. */
  private readonly stop: AbortSignal;
  private readonly log: Logger;
  private readonly skipped: LimitedLog;

  private constructor(
    readonly dir: string,
    private readonly options: OriginsOptions,
  ) {
    this.log = options.logger.child({ component: "origins" });
    this.skipped = new LimitedLog(this.log, new RateLimitedLog(300_000, 1));
    this.stop = options.signal ? AbortSignal.any([options.signal, this.closed.signal]) : this.closed.signal;
  }

  static async open(dir: string, options: OriginsOptions): Promise<OriginsWatcher> {
    const watcher = new OriginsWatcher(dir, options);
    await watcher.load();
    watcher.polling = watcher.poll(options.pollMs ?? 1_000);
    return watcher;
  }

  /** Whether `origin` (a node id) is a monitor listed in the directory. */
  has(origin: string): boolean {
    return this.trusted.has(origin);
  }

  get size(): number {
    return this.trusted.size;
  }

  /** Loads the directory now. Serialised with the poller. */
  reload(): Promise<void> {
    return this.loads.run(() => this.load());
  }

  /** Stops polling. Idempotent. */
  async close(): Promise<void> {
    this.closed.abort();
    await this.polling;
    await this.loads.idle();
  }

  /** Until stopped: every `pollMs`, loads the directory again if it changed. */
  private async poll(pollMs: number): Promise<void> {
    if (pollMs <= 0) return;
    while (await sleep(pollMs, this.stop)) {
      await this.loads
        .run(async () => {
          if ((await directorySignature([this.dir])) !== this.signature) await this.load();
        })
        .catch((error: unknown) => this.log.error({ err: error }, "cannot poll the origins directory"));
    }
  }

  private async load(): Promise<void> {
    // Taken before reading: a change during the load shows up as a new signature next poll.
    const signature = await directorySignature([this.dir]);
    const scan = await scanEntries(this.dir, { authorized: true });
    const entries = scan.directory ? [] : scan.entries.filter((e) => e.signPublic);
    const before = this.trusted;
    this.trusted = new Set(entries.map((e) => e.nodeId));
    this.signature = signature;
    const removed = [...before].filter((o) => !this.trusted.has(o)).length;
    this.log.info(
      { dir: this.dir, origins: this.trusted.size, removed, skipped: scan.skipped.length },
      "origin keys loaded",
    );
    if (scan.skipped.length > 0) this.options.metrics.inc("keys_skipped_total", scan.skipped.length);
    for (const entry of scan.skipped) {
      this.skipped.warn(
        `${entry.file}\n${entry.reason}`,
        { file: entry.file, reason: entry.reason },
        "key skipped",
      );
    }
  }
}
