import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { SerialQueue } from "../toolkit/serial-queue.js";
import { type Schedule, sleep } from "../toolkit/wake-up.js";
import type { LogInterpreter, MonitorEvent } from "./interpret.js";
import type { Outbox, Position } from "./outbox.js";
import type { PublishableEvents } from "./publishable.js";

/** Wait before a failed commit (disk full, I/O error) is tried again. */
const RETRY_MS = 1_000;

export interface CommitterOptions {
  outbox: Outbox;
  /** The log input's name in the outbox (`file`, `journald`). */
  source: string;
  interpreter: LogInterpreter;
  publishable: PublishableEvents;
  /** Called once new entries are in the outbox. */
  onQueued: () => void;
  signal: AbortSignal;
  schedule?: Schedule;
  logger: Logger;
  metrics: Metrics;
}

/**
 * The outbox's one writer: signs what the interpreter produced and stores it with the log position
 * and interpreter state it belongs to, one commit at a time, in order. A failure (disk full, I/O
 * error) is retried until it succeeds or the monitor stops: the reader waits meanwhile, and nothing
 * read is lost (what was not stored is read again after a restart).
 */
export class Committer {
  private readonly queue = new SerialQueue();
  private readonly errors: LimitedLog;
  private lastPosition: Position | undefined;
  /** Lines read, and how many of them the stored position covers. */
  private read = 0;
  private saved = 0;

  constructor(private readonly o: CommitterOptions) {
    this.errors = new LimitedLog(o.logger, new RateLimitedLog(60_000, 1));
  }

  /** A line was read; reading stands at `position` after it. */
  advance(position: Position): void {
    this.lastPosition = position;
    this.read++;
  }

  /** Lines were read since the last stored position. */
  get behind(): boolean {
    return this.saved < this.read;
  }

  /**
   * Queues a commit of `produced` (maybe none: the position of quiet lines). Position and state are
   * taken now, with the events, not when the commit runs: a commit queued behind another must not
   * store a position past lines whose events the other has not stored.
   */
  commit(produced: readonly MonitorEvent[]): Promise<void> {
    const position = this.lastPosition;
    const state = this.o.interpreter.snapshot();
    const upTo = this.read;
    return this.queue.run(async () => {
      for (;;) {
        try {
          const entries = await this.o.publishable.sign(produced);
          this.o.outbox.commit(this.o.source, entries, position, state);
          this.saved = Math.max(this.saved, upTo);
          for (const entry of entries) {
            this.o.metrics.inc("events_published_total");
            this.o.logger.info(
              { id: entry.id, kind: entry.kind, jail: entry.jail, ip: entry.ip },
              "event queued",
            );
          }
          if (entries.length > 0) this.o.onQueued();
          return;
        } catch (error) {
          this.o.metrics.inc("outbox_commit_failures_total");
          if (this.o.signal.aborted) return;
          this.errors.error(
            "commit",
            { err: (error as Error).message },
            "saving monitor state failed; retrying",
          );
          if (!(await sleep(RETRY_MS, this.o.signal, this.o.schedule))) return;
        }
      }
    });
  }

  /**
   * At shutdown, once the reader stopped: waits for the queued commits, then stores the position
   * of the last quiet lines (unless a failing disk is why we stop).
   */
  async flush(): Promise<void> {
    await this.queue.idle();
    if (!this.behind) return;
    try {
      this.o.outbox.commit(this.o.source, [], this.lastPosition, this.o.interpreter.snapshot());
    } catch (error) {
      this.o.logger.error({ err: (error as Error).message }, "saving the log position failed");
    }
  }
}
