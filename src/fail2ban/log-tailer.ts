import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { type FileHandle, open, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { type Logger, untrusted } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { WakeUp } from "../toolkit/wake-up.js";

/** Where reading stands: just after the last line handed out, in the file with this inode. */
export interface Position {
  inode: number;
  offset: number;
  /**
   * sha256 (hex) of the file's first min(offset, 4 KiB) bytes. A copytruncate while the monitor is
   * down keeps the inode, and a refill can pass the old offset on a line boundary; fail2ban's first
   * line carries a timestamp, so the refilled file's head differs. Absent in positions saved before
   * it existed: then only the size is checked.
   */
  head?: string;
}

export interface TailedLine {
  /** Decoded as UTF-8, invalid bytes replaced by U+FFFD; no line terminator. */
  line: string;
  /** The position just after this line: persist it together with what was derived from the line. */
  position: Position;
}

export interface LogTailerOptions {
  file: string;
  /** `"end"`: skip what the file holds now (a file that appears later is read from 0). */
  start: Position | "end";
  /** Polled this often even when inotify is silent (it misses renames on some file systems). */
  pollIntervalMs?: number;
  /** Longer lines are skipped whole, with a counted warning. */
  maxLineBytes?: number;
  signal?: AbortSignal;
  logger: Logger;
  metrics?: Metrics;
}

const DEFAULT_POLL_MS = 1000;
const DEFAULT_MAX_LINE = 8192;
const CHUNK = 64 * 1024;
/** Bytes at the start of the file compared after every read and fingerprinted in each position, to
 * notice a copytruncate that refilled the file past our offset: its first line differs (it starts
 * with another timestamp). */
const HEAD = 4096;
const NEWLINE = 0x0a;

interface Current {
  fh: FileHandle;
  inode: number;
  /** Next byte to read. */
  readOffset: number;
  pending: Buffer[];
  pendingBytes: number;
  /** Discarding up to the next newline (a line started before us, or an over-long line). */
  skipping: boolean;
  head: Buffer;
  /** Fingerprint of `head` once it holds HEAD bytes (every later position shares it). */
  headHash: string | undefined;
  /** The file at our path is another inode; logged once. */
  replacedNoticed: boolean;
}

/**
 * Follows a log file by name, like `tail -F`, and yields complete lines with their position.
 *
 * Rotation: after a rename or delete, fail2ban keeps writing to the old inode until `flushlogs`
 * (logrotate's postrotate). So the old file is read until the file now at the path has content: only
 * then has fail2ban switched, and the old file is drained once more and left. A file that shrank below
 * our offset, or whose first bytes changed, was truncated in place (copytruncate): read again from 0.
 *
 * Single consumer: `for await (const { line, position } of tailer)`. `close()` ends the loop; errors
 * are logged and retried at the next poll, never thrown.
 */
export class LogTailer implements AsyncIterable<TailedLine> {
  private readonly file: string;
  private readonly dir: string;
  private readonly base: string;
  private readonly pollMs: number;
  private readonly maxLine: number;
  private readonly logger: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly warnings: LimitedLog;
  private readonly start: Position | "end";
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();

  /** One read buffer, reused: lines are decoded and partial lines copied before the next read. */
  private readonly buf = Buffer.allocUnsafe(CHUNK);
  private cur: Current | undefined;
  /** The start position has been applied; from then on a file that appears is read from 0. */
  private started = false;
  private closed = false;
  /** Woken by inotify, the poll timer and close(): something may have changed. */
  private readonly changes = new WakeUp();
  private timer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private iterator: AsyncGenerator<TailedLine> | undefined;

  constructor(options: LogTailerOptions) {
    const { start } = options;
    if (
      start !== "end" &&
      !(isCount(start.inode) && isCount(start.offset) && (start.head === undefined || isHash(start.head)))
    ) {
      throw new TypeError(`invalid log position ${JSON.stringify(start)}, expected inode and offset >= 0`);
    }
    this.file = path.resolve(options.file);
    this.dir = path.dirname(this.file);
    this.base = path.basename(this.file);
    this.start = start;
    this.pollMs = Math.max(10, options.pollIntervalMs ?? DEFAULT_POLL_MS);
    this.maxLine = Math.max(1, options.maxLineBytes ?? DEFAULT_MAX_LINE);
    this.logger = options.logger;
    this.warnings = new LimitedLog(options.logger, new RateLimitedLog(60_000, 3));
    this.metrics = options.metrics;
    this.signal = options.signal;
    if (this.signal?.aborted) this.closed = true;
    else this.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  [Symbol.asyncIterator](): AsyncGenerator<TailedLine> {
    this.iterator ??= this.run();
    return this.iterator;
  }

  /** Ends the iteration and releases the file, watcher and timer. Idempotent. */
  close(): void {
    if (this.closed && this.timer === undefined && this.cur === undefined) return;
    this.closed = true;
    this.signal?.removeEventListener("abort", this.onAbort);
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    this.dropCurrent();
    this.changes.wake();
  }

  private async *run(): AsyncGenerator<TailedLine> {
    try {
      if (this.closed) return;
      this.timer = setInterval(() => this.changes.wake(), this.pollMs);
      while (!this.closed) {
        this.ensureWatcher();
        const lines = await this.guard(() => this.step());
        if (lines === undefined) {
          // A change during the step was kept: this returns at once and the step runs again.
          if (!this.closed) await this.changes.wait();
          continue;
        }
        for (const line of lines) {
          if (this.closed) return;
          yield line;
        }
      }
    } finally {
      this.close();
    }
  }

  /** Reads what is there: lines (maybe none, then call again at once), or undefined: wait for a change. */
  private async step(): Promise<TailedLine[] | undefined> {
    if (!this.started) {
      await this.openInitial();
      this.started = true;
    } else if (!this.cur && (await this.openAt(this.file, 0))) {
      this.logger.info({ file: this.file }, "log file appeared; reading it from the start");
    }
    const cur = this.cur;
    if (!cur) return undefined;
    let lines: TailedLine[] | undefined;
    try {
      lines = await this.readChunk(cur);
    } catch (error) {
      // A handle that fails while another file is at the path would block the switch forever.
      const st = await statOrUndefined(this.file);
      if (st !== undefined && st.ino !== cur.inode && this.cur === cur) {
        this.logger.warn(
          { file: this.file, inode: cur.inode },
          "old log file unreadable; following the new one",
        );
        this.dropCurrent();
        await this.openAt(this.file, 0);
      }
      throw error;
    }
    if (lines) return lines;
    // At the end of the current file: was it truncated, or has the file at our path been replaced?
    const { size } = await cur.fh.stat();
    if (size < cur.readOffset) return this.truncated(cur, `size ${size} < offset ${cur.readOffset}`);
    return this.checkPath(cur);
  }

  /**
   * Reads one chunk; undefined at end of file. The file's first bytes are compared after each read:
   * a copytruncate refilled past our offset (even between two reads) is then noticed and read from
   * 0 instead of from the middle of a line.
   */
  private async readChunk(cur: Current): Promise<TailedLine[] | undefined> {
    const { bytesRead } = await cur.fh.read(this.buf, 0, CHUNK, cur.readOffset);
    if (bytesRead === 0 || this.cur !== cur) return undefined;
    const chunk = this.buf.subarray(0, bytesRead);
    if (cur.readOffset > 0 && !(await this.headMatches(cur)))
      return this.truncated(cur, "its first bytes changed");
    if (cur.readOffset < HEAD && cur.head.length >= cur.readOffset) {
      cur.head = Buffer.concat([
        cur.head.subarray(0, cur.readOffset),
        chunk.subarray(0, HEAD - cur.readOffset),
      ]);
      cur.headHash = undefined;
    }
    const lines = this.split(cur, chunk);
    cur.readOffset += bytesRead;
    return lines;
  }

  private split(cur: Current, chunk: Buffer): TailedLine[] {
    const out: TailedLine[] = [];
    let from = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl !== -1; nl = chunk.indexOf(NEWLINE, from)) {
      const piece = chunk.subarray(from, nl);
      const end = cur.readOffset + nl + 1;
      if (cur.skipping) cur.skipping = false;
      else if (cur.pendingBytes + piece.length > this.maxLine) this.overlong(cur.pendingBytes + piece.length);
      else {
        const bytes = cur.pendingBytes > 0 ? Buffer.concat([...cur.pending, piece]) : piece;
        out.push({
          line: decode(bytes),
          position: { inode: cur.inode, offset: end, head: headHash(cur, end) },
        });
      }
      cur.pending = [];
      cur.pendingBytes = 0;
      from = nl + 1;
    }
    const rest = chunk.subarray(from);
    if (rest.length > 0 && !cur.skipping) {
      if (cur.pendingBytes + rest.length > this.maxLine) {
        this.overlong(cur.pendingBytes + rest.length);
        cur.pending = [];
        cur.pendingBytes = 0;
        cur.skipping = true;
      } else {
        cur.pending.push(Buffer.from(rest));
        cur.pendingBytes += rest.length;
      }
    }
    return out;
  }

  /** At end of file: lines drained, [] to read on at once (switched), undefined to wait. */
  private async checkPath(cur: Current): Promise<TailedLine[] | undefined> {
    const st = await statOrUndefined(this.file);
    if (st?.ino === cur.inode) return undefined;
    // Gone, or an empty file is there: fail2ban still writes to our inode until flushlogs.
    if (st === undefined || st.size === 0) {
      if (st !== undefined && !cur.replacedNoticed) {
        cur.replacedNoticed = true;
        this.logger.info(
          { file: this.file },
          "log file replaced; reading the old one until the new one has lines",
        );
      }
      return undefined;
    }
    // The new file has content, so fail2ban has switched; whatever it wrote to the old file came
    // before. Drain the old file once more (lines written between our last read and the stat).
    const tail = await this.readChunk(cur);
    if (tail) return tail;
    if (cur.pendingBytes > 0) {
      this.logger.warn(
        { file: this.file, bytes: cur.pendingBytes },
        "rotated log ended without a newline; partial line dropped",
      );
    }
    this.metrics?.inc("log_source_events_total", { event: "rotation" });
    this.logger.info(
      { file: this.file, from: cur.inode, to: st.ino },
      "log rotated; following the new file from its start",
    );
    this.dropCurrent();
    await this.openAt(this.file, 0);
    return [];
  }

  /** Truncated in place (copytruncate): read it again from 0. */
  private truncated(cur: Current, why: string): TailedLine[] {
    this.metrics?.inc("log_source_events_total", { event: "truncation" });
    this.logger.info({ file: this.file, why }, "log truncated in place; reading it again from the start");
    cur.readOffset = 0;
    cur.pending = [];
    cur.pendingBytes = 0;
    cur.skipping = false;
    cur.head = Buffer.alloc(0);
    cur.headHash = undefined;
    return [];
  }

  private async headMatches(cur: Current): Promise<boolean> {
    const want = Math.min(HEAD, cur.readOffset);
    if (want === 0) return true;
    const buf = Buffer.alloc(want);
    const { bytesRead } = await cur.fh.read(buf, 0, want, 0);
    const got = buf.subarray(0, bytesRead);
    const known = Math.min(cur.head.length, got.length);
    if (!got.subarray(0, known).equals(cur.head.subarray(0, known))) return false;
    if (got.length > cur.head.length) {
      cur.head = Buffer.from(got);
      cur.headHash = undefined;
    }
    return true;
  }

  private async openInitial(): Promise<void> {
    const start = this.start;
    if (start === "end") {
      if (!(await this.openAt(this.file, "end"))) {
        this.logger.info({ file: this.file }, "log file does not exist yet; waiting for it");
      }
      return;
    }
    const st = await statOrUndefined(this.file);
    if (st?.ino === start.inode) {
      if (st.size >= start.offset && (await this.openAt(this.file, start.offset, start.inode, start.head)))
        return;
      this.logger.warn(
        { file: this.file, position: start },
        "log truncated while stopped; reading it from the start",
      );
      this.metrics?.inc("log_source_events_total", { event: "truncation" });
      await this.openAt(this.file, 0);
      return;
    }
    // Rotated while we were down: finish the old file if it is still next to the new one.
    const old = await this.findRotated(start);
    if (old !== undefined && (await this.openAt(old, start.offset, start.inode, start.head))) {
      this.logger.info(
        { file: this.file, old },
        "log rotated while stopped; reading the rest of the old file first",
      );
      return;
    }
    this.logger.warn(
      { file: this.file, position: start },
      "log rotated while stopped and the old file is gone; lines written to it after the position are lost",
    );
    await this.openAt(this.file, 0);
  }

  /**
   * Opens `file` at `offset` ("end": its size) and makes it current; false if it does not exist, is
   * not the expected inode, is shorter, `offset` is not a line boundary, or the file's first bytes are
   * not those fingerprinted in `head` (then it is not our position: truncated and refilled).
   */
  private async openAt(
    file: string,
    offset: number | "end",
    inode?: number,
    head?: string,
  ): Promise<boolean> {
    let fh: FileHandle;
    try {
      fh = await open(file, "r");
    } catch (error) {
      if (errorCode(error) === "ENOENT") return false;
      throw error;
    }
    try {
      const st = await fh.stat();
      const at = offset === "end" ? st.size : offset;
      if ((inode !== undefined && st.ino !== inode) || at > st.size || this.closed) {
        await fh.close();
        return false;
      }
      // Begin at a line boundary: a line cut by `end` (or a stale offset) is skipped, not half-read.
      let skipping = false;
      if (at > 0) {
        const b = Buffer.alloc(1);
        await fh.read(b, 0, 1, at - 1);
        skipping = b[0] !== NEWLINE;
        if (skipping && offset !== "end") {
          await fh.close();
          return false;
        }
      }
      const buf = Buffer.alloc(Math.min(HEAD, at));
      const { bytesRead } = buf.length > 0 ? await fh.read(buf, 0, buf.length, 0) : { bytesRead: 0 };
      const first = buf.subarray(0, bytesRead);
      if (head !== undefined && !hashEquals(sha256(first), head)) {
        await fh.close();
        return false;
      }
      this.cur = {
        fh,
        inode: st.ino,
        readOffset: at,
        pending: [],
        pendingBytes: 0,
        skipping,
        head: first,
        headHash: undefined,
        replacedNoticed: false,
      };
      this.logger.info({ file, inode: st.ino, offset: at }, "following log file");
      return true;
    } catch (error) {
      await fh.close().catch(() => {});
      throw error;
    }
  }

  /** A file beside ours (`fail2ban.log.1`, `fail2ban.log-20261129`) with the position's inode. */
  private async findRotated(position: Position): Promise<string | undefined> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return undefined;
    }
    for (const name of names.filter((n) => n.startsWith(this.base) && n !== this.base).slice(0, 1000)) {
      const candidate = path.join(this.dir, name);
      const st = await statOrUndefined(candidate);
      if (st?.isFile() && st.ino === position.inode && st.size >= position.offset) return candidate;
    }
    return undefined;
  }

  private dropCurrent(): void {
    const cur = this.cur;
    this.cur = undefined;
    cur?.fh.close().catch(() => {});
  }

  private ensureWatcher(): void {
    if (this.watcher || this.closed) return;
    try {
      // The directory, not the file: it also reports the file appearing, being renamed or replaced.
      const w = watch(this.dir, { persistent: false }, (_event, name) => {
        if (name === null || String(name).startsWith(this.base)) this.changes.wake();
      });
      w.on("error", () => {
        w.close();
        if (this.watcher === w) this.watcher = undefined;
      });
      this.watcher = w;
    } catch {
      // Directory missing or inotify exhausted: the poll timer still runs; retried each round.
    }
  }

  /** Runs one step; an error is logged (rate-limited), counted, and the step retried after a poll. */
  private async guard<T>(fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (error) {
      if (this.closed) return undefined;
      const code = errorCode(error) ?? "error";
      this.metrics?.inc("log_source_events_total", { event: "error" });
      this.warnings.warn(
        code,
        () => ({ file: this.file, code, err: untrusted(error instanceof Error ? error.message : error) }),
        "reading the log failed; retrying",
      );
      return undefined;
    }
  }

  private overlong(bytes: number): void {
    this.metrics?.inc("log_source_events_total", { event: "overlong-line" });
    this.warnings.warn(
      "overlong",
      { file: this.file, bytes: `>${bytes}`, max: this.maxLine },
      "over-long log line skipped",
    );
  }
}

/** The fingerprint of the position `end`: the first min(end, HEAD) bytes, which `cur.head` holds. */
function headHash(cur: Current, end: number): string {
  if (end < HEAD) return sha256(cur.head.subarray(0, end));
  cur.headHash ??= sha256(cur.head.subarray(0, HEAD));
  return cur.headHash;
}

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Both are hex digests of the file's own bytes, no secret: a plain compare is enough. */
function hashEquals(a: string, b: string): boolean {
  return a === b.toLowerCase();
}

function isHash(s: unknown): s is string {
  return typeof s === "string" && /^[0-9a-fA-F]{64}$/.test(s);
}

function decode(bytes: Buffer): string {
  const text = bytes.toString("utf8");
  return text.endsWith("\r") ? text.slice(0, -1) : text;
}

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

function errorCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined;
}

async function statOrUndefined(file: string) {
  try {
    return await stat(file);
  } catch (error) {
    if (errorCode(error) === "ENOENT" || errorCode(error) === "ENOTDIR") return undefined;
    throw error;
  }
}
