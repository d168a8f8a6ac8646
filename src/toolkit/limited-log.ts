/**
 * Lets through at most `burst` lines per key per `intervalMs`; the lines suppressed in between are
 * reported with the next line that passes. Threat: a peer that sends garbage in a loop would
 * otherwise fill the disk through our log. At most `maxKeys` keys are tracked (keys can come from
 * peers), so memory stays bounded too.
 */
export class RateLimitedLog {
  private readonly windows = new Map<string, { start: number; emitted: number; suppressed: number }>();

  constructor(
    private readonly intervalMs = 10_000,
    private readonly burst = 5,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 1024,
  ) {}

  /** Returns the number of suppressed lines to report if this line may be logged, else undefined. */
  allow(key: string): number | undefined {
    const now = this.now();
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.intervalMs) {
      if (!w && this.windows.size >= this.maxKeys) this.windows.clear();
      const suppressed = w?.suppressed ?? 0;
      w = { start: now, emitted: 0, suppressed: 0 };
      this.windows.set(key, w);
      w.emitted++;
      return suppressed;
    }
    if (w.emitted < this.burst) {
      w.emitted++;
      const suppressed = w.suppressed;
      w.suppressed = 0;
      return suppressed;
    }
    w.suppressed++;
    return undefined;
  }
}

/** What a limited line is written to: a pino logger or a child of one. */
export interface LogSink {
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

type Fields = Record<string, unknown>;

/**
 * A logger whose lines pass through a `RateLimitedLog`: each line carries `suppressed`, the number
 * of lines of its key dropped since the last one. Fields may be a function, computed only for a
 * line that is written (escaping untrusted text costs nothing when the line is dropped).
 */
export class LimitedLog {
  constructor(
    private readonly log: LogSink,
    private readonly limiter: RateLimitedLog = new RateLimitedLog(),
  ) {}

  /** Writes a warning unless `key` is over its limit; true when written. */
  warn(key: string, fields: Fields | (() => Fields), message: string): boolean {
    return this.write("warn", key, fields, message);
  }

  /** Writes an error unless `key` is over its limit; true when written. */
  error(key: string, fields: Fields | (() => Fields), message: string): boolean {
    return this.write("error", key, fields, message);
  }

  private write(
    level: "warn" | "error",
    key: string,
    fields: Fields | (() => Fields),
    message: string,
  ): boolean {
    const suppressed = this.limiter.allow(key);
    if (suppressed === undefined) return false;
    this.log[level]({ ...(typeof fields === "function" ? fields() : fields), suppressed }, message);
    return true;
  }
}
