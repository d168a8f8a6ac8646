import { setImmediate as yieldToLoop } from "node:timers/promises";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { type Schedule, sleep, WakeUp } from "../toolkit/wake-up.js";
import type { SignedEntry } from "./event-factory.js";
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
  /** Lines per transaction at most (CHUNK_LINES); 1 stores line by line, as before chunks. */
  chunkLines?: number;
  schedule?: Schedule;
  logger: Logger;
  metrics: Metrics;
}

/** Lines a chunk may gather before the reader waits for the chunk before it to be stored. */
export const CHUNK_LINES = 1_000;

/** Events signed between two turns of the event loop while a chunk is stored. */
const SIGN_SLICE = 32;

/** Lines read and what they produced, stored in one transaction with the position after the last. */
interface Chunk {
  produced: MonitorEvent[];
  position: Position | undefined;
  state: unknown;
  /** Lines read up to the last one of this chunk, and how many of them are in it. */
  upTo: number;
  lines: number;
  stored: Promise<void>;
  resolve: () => void;
}

/**
 * The outbox's one writer: signs what the interpreter produced and stores it with the log position
 * and interpreter state it belongs to, a chunk of lines per transaction (one fsync for a whole burst,
 * not one per line), chunks in order. While one chunk is stored the next one gathers; between chunks
 * the event loop turns, so delivery keeps sending during a burst. A failure (disk full, I/O error) is
 * retried until it succeeds or the monitor stops: the reader waits meanwhile, and nothing read is
 * lost (what was not stored is read again after a restart).
 */
export class Committer {
  private readonly errors: LimitedLog;
  private readonly chunkLines: number;
  private lastPosition: Position | undefined;
  /** Lines read, and how many of them the stored position covers. */
  private read = 0;
  private saved = 0;
  /** Lines read up to the last one handed to commit(). */
  private handed = 0;
  /** Gathering; taken by the drain when the chunk before it is stored. */
  private open: Chunk | undefined;
  private draining: Promise<void> | undefined;
  /** Woken when the drain takes the open chunk. */
  private readonly taken = new WakeUp();
  /** Events handed over but not stored yet. */
  private unstored = 0;

  constructor(private readonly o: CommitterOptions) {
    this.errors = new LimitedLog(o.logger, new RateLimitedLog(60_000, 1));
    this.chunkLines = o.chunkLines ?? CHUNK_LINES;
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

  /** Events handed to commit() and not in the outbox yet (the outbox may not have room for them). */
  get queued(): number {
    return this.unstored;
  }

  /**
   * Adds `produced` (maybe none: the position of quiet lines) to the chunk gathering, and resolves
   * once that chunk is stored. Position and state are taken now, with the events, not when the
   * chunk is stored: a stored position never runs ahead of events not stored with or before it.
   */
  commit(produced: readonly MonitorEvent[]): Promise<void> {
    const chunk = this.open ?? this.startChunk();
    chunk.produced.push(...produced);
    chunk.position = this.lastPosition;
    chunk.state = this.o.interpreter.snapshot();
    chunk.lines += this.read - this.handed;
    chunk.upTo = this.handed = this.read;
    this.unstored += produced.length;
    this.draining ??= this.drain();
    return chunk.stored;
  }

  /**
   * The reader's back-pressure: once the gathering chunk is full, waits until it is taken to be
   * stored (or the monitor stops), so at most two chunks are in memory.
   */
  async room(): Promise<void> {
    while (this.open && this.open.lines >= this.chunkLines && !this.o.signal.aborted) {
      await this.taken.wait(undefined, this.o.signal);
    }
  }

  /** Resolves once every chunk handed over is stored (or the monitor stopped). */
  async settled(): Promise<void> {
    while (this.draining) await this.draining;
  }

  private startChunk(): Chunk {
    let resolve = () => {};
    const stored = new Promise<void>((r) => {
      resolve = r;
    });
    this.open = {
      produced: [],
      position: undefined,
      state: undefined,
      upTo: this.read,
      lines: 0,
      stored,
      resolve,
    };
    return this.open;
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        // One turn of the event loop before each chunk: the reader fills it, delivery sends.
        await yieldToLoop();
        const chunk = this.open;
        if (!chunk) return;
        this.open = undefined;
        this.taken.wake();
        await this.store(chunk);
        this.unstored -= chunk.produced.length;
        chunk.resolve();
      }
    } finally {
      // In the same turn as the check that found no chunk: a chunk opened after it starts a new
      // drain (cleared in a callback, a commit in between joined a drain that had ended: stranded).
      this.draining = undefined;
    }
  }

  private async store(chunk: Chunk): Promise<void> {
    for (;;) {
      try {
        const entries: SignedEntry[] = [];
        for (let i = 0; i < chunk.produced.length; i += SIGN_SLICE) {
          // Signing a whole chunk holds the event loop for long: delivery gets a turn between slices.
          if (i > 0) await yieldToLoop();
          entries.push(...(await this.o.publishable.sign(chunk.produced.slice(i, i + SIGN_SLICE))));
        }
        this.o.outbox.commit(this.o.source, entries, chunk.position, chunk.state);
        this.saved = Math.max(this.saved, chunk.upTo);
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
  }

  /**
   * At shutdown, once the reader stopped: waits for the chunks handed over, then stores the
   * position of the last quiet lines (unless a failing disk is why we stop).
   */
  async flush(): Promise<void> {
    await this.settled();
    if (!this.behind) return;
    try {
      this.o.outbox.commit(this.o.source, [], this.lastPosition, this.o.interpreter.snapshot());
    } catch (error) {
      this.o.logger.error({ err: (error as Error).message }, "saving the log position failed");
    }
  }
}
