import { promises as fs } from "node:fs";
import path from "node:path";
import type { Db } from "../state/database.js";
import { type DaemonName, STATE_FILES } from "../state/files.js";
import { openForInspection } from "../state/inspect.js";

/**
 * What `f2bz status` reports: each daemon's state file in the node's state directory, read
 * read-only without leaving a trace (see openForInspection; the daemons may be running), each in one
 * read transaction, so that its numbers are consistent with each other. Times are unix milliseconds.
 */
export const DAEMONS: readonly DaemonName[] = ["publisher", "monitor", "subscriber"];

export type DaemonStatus<T> = { file: string; configured: boolean } & (
  | { state: "absent" }
  | { state: "unreadable"; error: string }
  | ({ state: "ok" } & T)
);

export interface PublisherState {
  /** Bans not expired yet (rows past their expiry wait for the running publisher to prune them). */
  activeBans: number;
  nextExpiry: number | null;
  publisherSeq: number;
  seenIds: number;
  /** Per origin (monitor node id), the highest event sequence accepted; named when its key is known. */
  origins: { origin: string; name: string | null; highWaterMark: number }[];
}

export type LogPosition =
  | { source: string; inode: number; offset: number }
  | { source: string; cursor: string };

export interface MonitorState {
  /** Signed events not yet acknowledged by every publisher. */
  outbox: number;
  /** Time of the oldest of them. */
  oldestQueued: number | null;
  /** Per publisher (its submit endpoint), the events it has not acknowledged. */
  pending: { publisher: string; events: number }[];
  positions: LogPosition[];
  /** The last sequence number this node's events used. */
  sequence: number;
}

export interface SubscriberState {
  appliedBans: number;
  /** May lie in the past while the subscriber is stopped: it unbans those when it starts. */
  nextExpiry: number | null;
  /** Per publisher (its feed endpoint), the last publisher sequence number handled; null: none yet. */
  publishers: { feed: string; lastSeq: number | null }[];
  ledger: number;
  seenIds: number;
}

export interface StatusReport {
  node: string;
  stateDir: string;
  now: number;
  publisher: DaemonStatus<PublisherState>;
  monitor: DaemonStatus<MonitorState>;
  subscriber: DaemonStatus<SubscriberState>;
}

export interface StatusInput {
  node: string;
  stateDir: string;
  now: number;
  /** Which sections the config has; configured endpoints are listed even before they have state. */
  configured: {
    publisher?: { originNames: ReadonlyMap<string, string> };
    monitor?: { publishers: readonly string[] };
    subscriber?: { feeds: readonly string[] };
  };
}

export async function readStatus(input: StatusInput): Promise<StatusReport> {
  const { configured, now } = input;
  const open = (daemon: DaemonName) => openState(input.stateDir, daemon, configured[daemon] !== undefined);
  return {
    node: input.node,
    stateDir: input.stateDir,
    now,
    publisher: await open("publisher").then((s) =>
      s.read((db) => readPublisher(db, now, configured.publisher?.originNames ?? new Map())),
    ),
    monitor: await open("monitor").then((s) =>
      s.read((db) => readMonitor(db, configured.monitor?.publishers ?? [])),
    ),
    subscriber: await open("subscriber").then((s) =>
      s.read((db) => readSubscriber(db, configured.subscriber?.feeds ?? [])),
    ),
  };
}

async function openState(stateDir: string, daemon: DaemonName, configured: boolean) {
  const file = path.join(stateDir, STATE_FILES[daemon]);
  const base = { file, configured };
  let missing: DaemonStatus<never> | undefined;
  try {
    await fs.stat(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    missing =
      code === "ENOENT" || code === "ENOTDIR"
        ? { ...base, state: "absent" }
        : { ...base, state: "unreadable", error: `cannot read: ${code ?? (error as Error).message}` };
  }
  return {
    read<T>(reader: (db: Db) => T): DaemonStatus<T> {
      if (missing) return missing;
      const db = openForInspection(file);
      if (!db) return { ...base, state: "unreadable", error: "cannot open it read-only" };
      try {
        return { ...base, state: "ok", ...db.transaction(() => reader(db))() };
      } catch (error) {
        return { ...base, state: "unreadable", error: (error as Error).message };
      } finally {
        db.close();
      }
    },
  };
}

const count = (db: Db, sql: string, ...params: unknown[]) =>
  (db.prepare(sql).get(...params) as { n: number }).n;

function readPublisher(db: Db, now: number, names: ReadonlyMap<string, string>): PublisherState {
  // A ban is lifted when its last holder goes: its expiry is the latest of its holders'.
  const active = db
    .prepare(
      "SELECT count(*) AS n, min(until) AS next FROM (SELECT max(expires) AS until FROM holders WHERE expires > ? GROUP BY jail, ip)",
    )
    .get(now) as { n: number; next: number | null };
  const seq = db.prepare("SELECT value FROM meta WHERE key = 'publisher_seq'").get() as
    | { value: number }
    | undefined;
  const origins = db.prepare("SELECT origin, high FROM origins ORDER BY origin").all() as {
    origin: string;
    high: number;
  }[];
  return {
    activeBans: active.n,
    nextExpiry: active.next,
    publisherSeq: seq?.value ?? 0,
    seenIds: count(db, "SELECT count(*) AS n FROM seen"),
    origins: origins.map((o) => ({
      origin: o.origin,
      name: names.get(o.origin) ?? null,
      highWaterMark: o.high,
    })),
  };
}

function readMonitor(db: Db, configured: readonly string[]): MonitorState {
  const outbox = db.prepare("SELECT count(*) AS n, min(time) AS oldest FROM outbox").get() as {
    n: number;
    oldest: number | null;
  };
  const pending = new Map(configured.map((p) => [p, 0]));
  // The queue names publishers by pinned key; shown by the endpoint the monitor last had for it.
  const named = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'publishers'").get();
  const rows = db
    .prepare(
      named
        ? "SELECT coalesce(e.endpoint, p.publisher) AS publisher, count(*) AS n FROM pending p LEFT JOIN publishers e ON e.name = p.publisher GROUP BY 1 ORDER BY 1"
        : "SELECT publisher, count(*) AS n FROM pending GROUP BY publisher ORDER BY publisher",
    )
    .all() as { publisher: string; n: number }[];
  for (const row of rows) pending.set(row.publisher, row.n);
  const positions = (
    db.prepare("SELECT source, inode, offset, cursor FROM position ORDER BY source").all() as {
      source: string;
      inode: number | null;
      offset: number | null;
      cursor: string | null;
    }[]
  ).map(
    (p): LogPosition =>
      p.cursor !== null
        ? { source: p.source, cursor: p.cursor }
        : { source: p.source, inode: p.inode ?? 0, offset: p.offset ?? 0 },
  );
  const seq = db.prepare("SELECT value FROM meta WHERE key = 'seq'").get() as { value: number } | undefined;
  return {
    outbox: outbox.n,
    oldestQueued: outbox.oldest,
    pending: [...pending].map(([publisher, events]) => ({ publisher, events })),
    positions,
    sequence: seq?.value ?? 0,
  };
}

function readSubscriber(db: Db, configured: readonly string[]): SubscriberState {
  const applied = db
    .prepare(
      "SELECT count(*) AS n, min(until) AS next FROM (SELECT max(expires) AS until FROM holders GROUP BY jail, ip)",
    )
    .get() as {
    n: number;
    next: number | null;
  };
  const publishers = new Map<string, number | null>(configured.map((feed) => [feed, null]));
  const rows = db.prepare("SELECT endpoint, seq FROM publishers ORDER BY endpoint").all() as {
    endpoint: string;
    seq: number;
  }[];
  for (const row of rows) publishers.set(row.endpoint, row.seq);
  return {
    appliedBans: applied.n,
    nextExpiry: applied.next,
    publishers: [...publishers].map(([feed, lastSeq]) => ({ feed, lastSeq })),
    ledger: count(db, "SELECT count(*) AS n FROM ledger"),
    seenIds: count(db, "SELECT count(*) AS n FROM seen"),
  };
}
