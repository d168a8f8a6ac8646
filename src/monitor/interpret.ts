import type { LogRecord } from "../fail2ban/log-line.js";
import type { LabelsOf } from "../metrics/catalogue.js";
import type { Metrics } from "../metrics/registry.js";

/** What the monitor propagates: a real ban or unban, in log order. */
export interface MonitorEvent {
  kind: "ban" | "unban";
  jail: string;
  /** As logged; not validated yet (see fail2ban/log-line.ts). */
  ip: string;
  raw: string;
}

export interface LogInterpreterOptions {
  /** Jails whose lines are never propagated (the cluster's own jail: echo loop, DESIGN §5). */
  ignoreJails?: Iterable<string>;
  /**
   * How long an unban is held back, after the last unban of its jail, before it is propagated.
   * `fail2ban-client stop <jail>` (and 0.9's `reload <jail>`) logs its flush of Unbans with no marker
   * before it, only `Jail 'x' stopped` after the last one, which can come seconds later with slow
   * actions (an unban action runs after its line is written). 0 propagates unbans at once.
   */
  holdUnbanMs?: number;
  /** Clock for the hold; injectable for tests. */
  now?: () => number;
  /** Suppressed lines by reason, as `log_lines_suppressed_total{reason}`. */
  metrics?: Metrics;
  /** A jail was (re)started or reloaded: its settings (bantime) may have changed. */
  onJailStarted?: (jail: string) => void;
}

/** The interpreter's state, JSON-safe, to persist atomically with the log position it belongs to. */
export interface InterpreterState {
  allStopping: boolean;
  restarted: string[];
  stopping: string[];
  held: MonitorEvent[];
  pid?: number;
}

const DEFAULT_HOLD_MS = 5000;
const MAX_HELD = 65_536;

/**
 * Turns fail2ban log records into the bans and unbans the monitor propagates.
 *
 * fail2ban writes `Unban` for every active ban whenever a jail stops, and `Restore Ban` for each again
 * when it starts: copying those would lift and re-add every ban in the cluster on each restart. Only
 * `Ban` and `Unban` are propagated, and an `Unban` only when no stop of its jail surrounds it.
 *
 * State machine (fields of InterpreterState):
 *   allStopping   every jail is stopping, except those in `restarted`
 *   restarted     jails that logged `started`/`reloaded` since allStopping was set
 *   stopping      jails stopping on their own
 *   held          unbans waiting `holdUnbanMs` for a `Jail 'x' stopped` that would make them a flush
 *   pid           the server pid of the last line that had one
 *
 *   record                                   effect
 *   ─────────────────────────────────────────────────────────────────────────────────────────────────
 *   any record with a pid ≠ pid              a new server process: as `start` (covers loglevel NOTICE,
 *                                            where every lifecycle line below is missing)
 *   start  `Starting Fail2ban v…`            all state cleared; held unbans dropped (the process that
 *                                            logged them is gone and may have been flushing)
 *   shutdown begin | stop-all-jails          held unbans propagated (they came before the stop), then
 *          `Shutdown in progress...`         allStopping, restarted cleared
 *          `Stopping all jails` (also reload --restart of all jails)
 *   shutdown exit `Exiting Fail2ban`         allStopping (until the next start)
 *   reload (all) `Reload all jails`          held propagated, then allStopping: a plain reload logs no
 *                                            Unban except for jails it removes, and those stop
 *   reload jail x `Reload jail x`,           x's held propagated, then x stopping
 *          `Restart jail 'x' (reason: …)`
 *   reload-finished `Reload finished.`       allStopping off, restarted and stopping cleared
 *   jail-started | jail-reloaded x           x out of stopping; into restarted if allStopping
 *   jail-stopped x                           x's held dropped (they were its flush); x stopping
 *   ban x ip                                 x's held propagated first (keeps order), then the ban
 *   unban x ip                               dropped if allStopping and x not restarted, or x stopping;
 *                                            else held (holdUnbanMs > 0) or propagated
 *   ignored restore-ban x                    x's held dropped: x restarted, so they were its flush
 *                                            (`reload --restart` at loglevel NOTICE shows only this)
 *   other ignored kinds                      nothing (counted)
 *
 * Held unbans are propagated by `release()` once `holdUnbanMs` passed since their jail's last unban.
 * Every doubt resolves toward keeping a ban: a real unban lost here still ends on the other nodes when
 * the ban's expiry passes (DESIGN §4), whereas a propagated flush would unban the whole cluster.
 */
export class LogInterpreter {
  private readonly ignoreJails: ReadonlySet<string>;
  private readonly holdMs: number;
  private readonly now: () => number;
  private readonly metrics: Metrics | undefined;
  private readonly onJailStarted: ((jail: string) => void) | undefined;

  private allStopping = false;
  private readonly restarted = new Set<string>();
  private readonly stopping = new Set<string>();
  private held: MonitorEvent[] = [];
  /** Per jail, when its latest held unban arrived. */
  private readonly lastUnbanAt = new Map<string, number>();
  private pid: number | undefined;

  constructor(options: LogInterpreterOptions = {}, state?: InterpreterState) {
    this.ignoreJails = new Set(options.ignoreJails ?? []);
    this.holdMs = Math.max(0, options.holdUnbanMs ?? DEFAULT_HOLD_MS);
    this.now = options.now ?? Date.now;
    this.metrics = options.metrics;
    this.onJailStarted = options.onJailStarted;
    if (state) this.load(state);
  }

  /** Feeds one record; returns the events to propagate now, in order. */
  push(record: LogRecord): MonitorEvent[] {
    const out: MonitorEvent[] = [];
    if (record.pid !== undefined) {
      if (this.pid !== undefined && record.pid !== this.pid && record.type !== "start") this.reset();
      this.pid = record.pid;
    }
    switch (record.type) {
      case "start":
        this.reset();
        break;
      case "shutdown":
        if (record.phase !== "exit") {
          this.releaseAll(out);
          this.restarted.clear();
        }
        this.allStopping = true;
        break;
      case "reload":
        if (record.jail === undefined) {
          this.releaseAll(out);
          this.allStopping = true;
          this.restarted.clear();
        } else {
          this.releaseJail(record.jail, out);
          this.stopping.add(record.jail);
        }
        break;
      case "reload-finished":
        this.allStopping = false;
        this.restarted.clear();
        this.stopping.clear();
        break;
      case "jail-started":
      case "jail-reloaded":
        this.onJailStarted?.(record.jail);
        this.stopping.delete(record.jail);
        if (this.allStopping) this.restarted.add(record.jail);
        break;
      case "jail-stopped":
        this.dropJail(record.jail);
        this.stopping.add(record.jail);
        break;
      case "ban":
        this.releaseJail(record.jail, out);
        if (this.ignoreJails.has(record.jail)) this.count("ignored-jail");
        else out.push({ kind: "ban", jail: record.jail, ip: record.ip, raw: record.raw });
        break;
      case "unban":
        this.unban({ kind: "unban", jail: record.jail, ip: record.ip, raw: record.raw }, out);
        break;
      case "ignored":
        if (record.what === "restore-ban" && record.jail !== undefined) this.dropJail(record.jail);
        this.count(record.what);
        break;
    }
    return out;
  }

  /** Unbans whose hold has passed, in log order. Call it when `nextReleaseAt()` is reached. */
  release(): MonitorEvent[] {
    const out: MonitorEvent[] = [];
    if (this.held.length === 0) return out;
    const now = this.now();
    const due = new Set<string>();
    for (const [jail, at] of this.lastUnbanAt) if (now - at >= this.holdMs) due.add(jail);
    if (due.size === 0) return out;
    const keep: MonitorEvent[] = [];
    for (const e of this.held) (due.has(e.jail) ? out : keep).push(e);
    this.held = keep;
    for (const jail of due) this.lastUnbanAt.delete(jail);
    return out;
  }

  /** When `release()` will next have something to return (epoch ms), if anything is held. */
  nextReleaseAt(): number | undefined {
    let next: number | undefined;
    for (const at of this.lastUnbanAt.values()) next = next === undefined ? at : Math.min(next, at);
    return next === undefined ? undefined : next + this.holdMs;
  }

  snapshot(): InterpreterState {
    const state: InterpreterState = {
      allStopping: this.allStopping,
      restarted: [...this.restarted],
      stopping: [...this.stopping],
      held: this.held.map((e) => ({ ...e })),
    };
    if (this.pid !== undefined) state.pid = this.pid;
    return state;
  }

  /** Loads a snapshot read back from the state file; anything malformed in it is skipped. */
  private load(state: InterpreterState): void {
    const strings = (v: unknown): string[] =>
      Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
    this.allStopping = state.allStopping === true;
    for (const jail of strings(state.restarted)) this.restarted.add(jail);
    for (const jail of strings(state.stopping)) this.stopping.add(jail);
    // The hold restarts now: a restarted monitor reads the backlog (with any `Jail 'x' stopped`)
    // well before a fresh hold passes.
    const now = this.now();
    for (const e of Array.isArray(state.held) ? state.held : []) {
      if (typeof e?.jail !== "string" || typeof e.ip !== "string") continue;
      this.held.push({ kind: "unban", jail: e.jail, ip: e.ip, raw: typeof e.raw === "string" ? e.raw : "" });
      this.lastUnbanAt.set(e.jail, now);
    }
    if (typeof state.pid === "number" && Number.isSafeInteger(state.pid)) this.pid = state.pid;
  }

  private unban(event: MonitorEvent, out: MonitorEvent[]): void {
    if (this.ignoreJails.has(event.jail)) this.count("ignored-jail");
    else if ((this.allStopping && !this.restarted.has(event.jail)) || this.stopping.has(event.jail)) {
      this.count("stop-flush");
    } else if (this.holdMs === 0) out.push(event);
    else this.hold(event);
  }

  private hold(event: MonitorEvent): void {
    if (this.held.length >= MAX_HELD) {
      // Bounded memory under a flood; dropping keeps the ban, the safe side.
      const dropped = this.held.shift();
      if (dropped && !this.held.some((e) => e.jail === dropped.jail)) this.lastUnbanAt.delete(dropped.jail);
      this.count("hold-overflow");
    }
    this.held.push(event);
    this.lastUnbanAt.set(event.jail, this.now());
  }

  private reset(): void {
    this.count("held-dropped", this.held.length);
    this.held = [];
    this.lastUnbanAt.clear();
    this.allStopping = false;
    this.restarted.clear();
    this.stopping.clear();
  }

  private releaseJail(jail: string, out: MonitorEvent[]): void {
    if (!this.lastUnbanAt.delete(jail)) return;
    const keep: MonitorEvent[] = [];
    for (const e of this.held) (e.jail === jail ? out : keep).push(e);
    this.held = keep;
  }

  private releaseAll(out: MonitorEvent[]): void {
    for (const e of this.held) out.push(e);
    this.held = [];
    this.lastUnbanAt.clear();
  }

  private dropJail(jail: string): void {
    if (!this.lastUnbanAt.delete(jail)) return;
    const before = this.held.length;
    this.held = this.held.filter((e) => e.jail !== jail);
    this.count("held-dropped", before - this.held.length);
  }

  private count(reason: LabelsOf<"log_lines_suppressed_total">["reason"], by = 1): void {
    if (by > 0) this.metrics?.inc("log_lines_suppressed_total", { reason }, by);
  }
}
