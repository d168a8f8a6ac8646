import path from "node:path";
import { type Db, openDatabase } from "../state/database.js";

const MIGRATIONS = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  INSERT INTO meta (key, value) VALUES ('seq', 0);
  CREATE TABLE position (source TEXT PRIMARY KEY, inode INTEGER, offset INTEGER, cursor TEXT) WITHOUT ROWID;
  CREATE TABLE interpreter (source TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    time INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    payload BLOB NOT NULL,
    signature BLOB NOT NULL
  );
  CREATE TABLE pending (
    id TEXT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    publisher TEXT NOT NULL,
    PRIMARY KEY (publisher, id)
  ) WITHOUT ROWID;
  `,
];

export const MONITOR_STATE_FILE = "monitor.sqlite3";

/** Where the log input stopped: a file position, or a journal cursor. */
export type Position = { inode: number; offset: number } | { cursor: string };

export interface OutboxEntry {
  id: string;
  seq: number;
  time: number;
  expires: number;
  payload: Buffer;
  signature: Buffer;
}

/**
 * The monitor's durable state: its per-origin sequence, its position in the log, and the outbox of
 * signed events not yet acknowledged by every publisher. An event and the log position after the
 * line it came from are stored in one transaction: after a crash the line is either read again
 * (and nothing was stored) or its event is in the outbox, never both and never neither.
 */
export class Outbox {
  private readonly db: Db;

  constructor(
    stateDir: string,
    private readonly publishers: readonly string[],
  ) {
    this.db = openDatabase(path.join(stateDir, MONITOR_STATE_FILE), MIGRATIONS);
    // Sequences start at the creation time in ms: if the state file is ever lost, new event ids
    // still never collide with ones the publishers have seen.
    this.db.prepare("UPDATE meta SET value = ? WHERE key = 'seq' AND value = 0").run(Date.now());
    // A publisher added to the config gets nothing old; one removed leaves nothing behind.
    const known = new Set(publishers);
    const stale = (this.db.prepare("SELECT DISTINCT publisher FROM pending").all() as { publisher: string }[])
      .map((r) => r.publisher)
      .filter((p) => !known.has(p));
    for (const p of stale) this.db.prepare("DELETE FROM pending WHERE publisher = ?").run(p);
    this.db.prepare("DELETE FROM outbox WHERE id NOT IN (SELECT id FROM pending)").run();
  }

  /** The sequence number the next event will carry. */
  nextSeq(): number {
    return (this.db.prepare("SELECT value FROM meta WHERE key = 'seq'").get() as { value: number }).value + 1;
  }

  position(source: string): Position | undefined {
    const row = this.db.prepare("SELECT inode, offset, cursor FROM position WHERE source = ?").get(source) as
      | { inode: number | null; offset: number | null; cursor: string | null }
      | undefined;
    if (!row) return undefined;
    if (row.cursor !== null) return { cursor: row.cursor };
    return { inode: row.inode ?? 0, offset: row.offset ?? 0 };
  }

  private savePosition(source: string, position: Position): void {
    if ("cursor" in position) {
      this.db
        .prepare("INSERT OR REPLACE INTO position (source, inode, offset, cursor) VALUES (?, NULL, NULL, ?)")
        .run(source, position.cursor);
    } else {
      this.db
        .prepare("INSERT OR REPLACE INTO position (source, inode, offset, cursor) VALUES (?, ?, ?, NULL)")
        .run(source, position.inode, position.offset);
    }
  }

  /** The log interpreter's state saved with the position it belongs to (JSON), if any. */
  interpreterState(source: string): unknown {
    const row = this.db.prepare("SELECT state FROM interpreter WHERE source = ?").get(source) as
      | { state: string }
      | undefined;
    return row ? JSON.parse(row.state) : undefined;
  }

  /**
   * Stores signed events for every publisher, the log position after the line they came from and
   * the interpreter's state, in one transaction.
   */
  commit(
    source: string,
    entries: readonly OutboxEntry[],
    position: Position | undefined,
    state: unknown,
  ): void {
    this.db.transaction(() => {
      for (const entry of entries) this.insert(entry, this.publishers);
      if (position) this.savePosition(source, position);
      this.db
        .prepare("INSERT OR REPLACE INTO interpreter (source, state) VALUES (?, ?)")
        .run(source, JSON.stringify(state));
    })();
  }

  private insert(entry: OutboxEntry, publishers: readonly string[]): void {
    this.db
      .prepare("INSERT INTO outbox (id, seq, time, expires, payload, signature) VALUES (?, ?, ?, ?, ?, ?)")
      .run(entry.id, entry.seq, entry.time, entry.expires, entry.payload, entry.signature);
    this.db.prepare("UPDATE meta SET value = max(value, ?) WHERE key = 'seq'").run(entry.seq);
    for (const p of publishers)
      this.db.prepare("INSERT INTO pending (id, publisher) VALUES (?, ?)").run(entry.id, p);
  }

  /**
   * Replaces a stale entry with a freshly signed one for the publishers still waiting for it, or
   * drops it (`fresh` undefined: its ban is over).
   */
  replace(oldId: string, fresh: OutboxEntry | undefined): void {
    this.db.transaction(() => {
      const waiting = (
        this.db.prepare("SELECT publisher FROM pending WHERE id = ?").all(oldId) as { publisher: string }[]
      ).map((r) => r.publisher);
      this.db.prepare("DELETE FROM outbox WHERE id = ?").run(oldId);
      if (fresh && waiting.length > 0) this.insert(fresh, waiting);
    })();
  }

  /** The oldest entry a publisher has not acknowledged yet. */
  nextFor(publisher: string): OutboxEntry | undefined {
    return this.db
      .prepare(
        "SELECT o.id, o.seq, o.time, o.expires, o.payload, o.signature FROM pending p JOIN outbox o ON o.id = p.id WHERE p.publisher = ? ORDER BY o.seq LIMIT 1",
      )
      .get(publisher) as OutboxEntry | undefined;
  }

  /** Marks an entry delivered to one publisher; drops it once every publisher has it. */
  acknowledge(publisher: string, id: string): void {
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM pending WHERE publisher = ? AND id = ?").run(publisher, id);
      if (this.db.prepare("SELECT 1 FROM pending WHERE id = ?").get(id) === undefined) {
        this.db.prepare("DELETE FROM outbox WHERE id = ?").run(id);
      }
    })();
  }

  size(): number {
    return (this.db.prepare("SELECT count(*) AS n FROM outbox").get() as { n: number }).n;
  }

  pendingFor(publisher: string): number {
    return (
      this.db.prepare("SELECT count(*) AS n FROM pending WHERE publisher = ?").get(publisher) as { n: number }
    ).n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
