import path from "node:path";
import { type Db, openDatabase } from "../state/database.js";
import { MONITOR_STATE_FILE } from "../state/files.js";

// Delivery order is the order events happened in (`place`), not their sequence number: an entry
// signed again (new seq) keeps its place, so a re-signed ban never overtakes the unban that
// followed it. Both indexes keep every step cheap however many entries wait.
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
    place INTEGER NOT NULL,
    PRIMARY KEY (publisher, id)
  ) WITHOUT ROWID;
  CREATE INDEX pending_queue ON pending (publisher, place);
  CREATE INDEX pending_id ON pending (id);
  `,
  // Publishers are named by their pinned CURVE key, not by an endpoint that a config edit renames
  // (which dropped their queue); the endpoint each key had last is kept for `f2bz status`.
  `
  CREATE TABLE publishers (name TEXT PRIMARY KEY, endpoint TEXT NOT NULL) WITHOUT ROWID;
  `,
  // The fingerprint of the log file's head at the position (see the tailer's Position.head): a
  // copytruncate while stopped, refilled past the offset, is read from 0. Rows saved before it have
  // NULL and are resumed as before.
  `
  ALTER TABLE position ADD COLUMN head TEXT;
  `,
];

/** Sequence numbers reserved per write to the state file. */
const SEQ_BLOCK = 1_024;

/** Where the log input stopped: a file position, or a journal cursor. */
export type Position = { inode: number; offset: number; head?: string } | { cursor: string };

/** A configured publisher: `name` (its pinned CURVE key, hex) is what the queue knows it by. */
export interface OutboxPublisher {
  name: string;
  endpoint: string;
}

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
 * (and nothing was stored) or its event is in the outbox, never both and never neither. Entries
 * are delivered in the order the lines were read, each publisher at its own pace.
 */
export class Outbox {
  private readonly db: Db;
  private readonly publishers: readonly string[];
  /** Sequence numbers reserved on disk up to `reservedSeq`, handed out from `nextSeq`. */
  private nextSeq = 1;
  private reservedSeq = 0;

  constructor(stateDir: string, publishers: readonly OutboxPublisher[]) {
    this.db = openDatabase(path.join(stateDir, MONITOR_STATE_FILE), MIGRATIONS);
    this.publishers = publishers.map((p) => p.name);
    // Sequences start at the creation time in ms: if the state file is ever lost, new event ids
    // still never collide with ones the publishers have seen.
    this.db.prepare("UPDATE meta SET value = ? WHERE key = 'seq' AND value = 0").run(Date.now());
    // A publisher added to the config gets nothing old; one removed leaves nothing behind.
    const known = new Set(this.publishers);
    this.db.transaction(() => {
      // State files of versions that named publishers by endpoint: a queue whose endpoint is still
      // configured belongs to the key configured there now. (Keys are hex, endpoints have `://`.)
      for (const p of publishers) {
        this.db
          .prepare("UPDATE OR IGNORE pending SET publisher = ? WHERE publisher = ?")
          .run(p.name, p.endpoint);
      }
      this.db.prepare("DELETE FROM publishers").run();
      for (const p of publishers) {
        this.db.prepare("INSERT INTO publishers (name, endpoint) VALUES (?, ?)").run(p.name, p.endpoint);
      }
      const listed = this.db.prepare("SELECT DISTINCT publisher FROM pending").all() as {
        publisher: string;
      }[];
      for (const { publisher } of listed) {
        if (!known.has(publisher)) this.db.prepare("DELETE FROM pending WHERE publisher = ?").run(publisher);
      }
      this.db.prepare("DELETE FROM outbox WHERE id NOT IN (SELECT id FROM pending)").run();
    })();
  }

  /**
   * Reserves the next sequence number, durably, before anything is signed with it. Signing is
   * asynchronous, so new events and re-signed stale ones are numbered concurrently; a number is
   * never handed out twice, not even after a crash that lost the event signed with it (a publisher
   * that saw that event would take a reused id for a resend and drop the new event as a duplicate).
   * Numbers are reserved SEQ_BLOCK at a time (one write, one fsync, per block, not per event); a
   * crash skips the rest of a block, which only leaves a gap (close() gives the rest back).
   */
  takeSeq(): number {
    if (this.nextSeq > this.reservedSeq) {
      this.reservedSeq = (
        this.db
          .prepare("UPDATE meta SET value = value + ? WHERE key = 'seq' RETURNING value")
          .get(SEQ_BLOCK) as { value: number }
      ).value;
      this.nextSeq = this.reservedSeq - SEQ_BLOCK + 1;
    }
    return this.nextSeq++;
  }

  position(source: string): Position | undefined {
    const row = this.db
      .prepare("SELECT inode, offset, cursor, head FROM position WHERE source = ?")
      .get(source) as
      | { inode: number | null; offset: number | null; cursor: string | null; head: string | null }
      | undefined;
    if (!row) return undefined;
    if (row.cursor !== null) return { cursor: row.cursor };
    return {
      inode: row.inode ?? 0,
      offset: row.offset ?? 0,
      ...(row.head !== null ? { head: row.head } : {}),
    };
  }

  private savePosition(source: string, position: Position): void {
    if ("cursor" in position) {
      this.db
        .prepare(
          "INSERT OR REPLACE INTO position (source, inode, offset, cursor, head) VALUES (?, NULL, NULL, ?, NULL)",
        )
        .run(source, position.cursor);
    } else {
      this.db
        .prepare(
          "INSERT OR REPLACE INTO position (source, inode, offset, cursor, head) VALUES (?, ?, ?, NULL, ?)",
        )
        .run(source, position.inode, position.offset, position.head ?? null);
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

  /** `place`: where it queues; a new event goes last (sequence numbers only grow). */
  private insert(entry: OutboxEntry, publishers: readonly string[], place = entry.seq): void {
    this.db
      .prepare("INSERT INTO outbox (id, seq, time, expires, payload, signature) VALUES (?, ?, ?, ?, ?, ?)")
      .run(entry.id, entry.seq, entry.time, entry.expires, entry.payload, entry.signature);
    this.db.prepare("UPDATE meta SET value = max(value, ?) WHERE key = 'seq'").run(entry.seq);
    for (const p of publishers)
      this.db.prepare("INSERT INTO pending (id, publisher, place) VALUES (?, ?, ?)").run(entry.id, p, place);
  }

  /**
   * Replaces a stale entry with a freshly signed one, in its place in the queue, for the publishers
   * still waiting for it, or drops it (`fresh` undefined: its ban is over). False, storing nothing,
   * when the entry is gone already: another publisher's link replaced or dropped it meanwhile.
   */
  replace(oldId: string, fresh: OutboxEntry | undefined): boolean {
    return this.db.transaction(() => {
      const waiting = this.db.prepare("SELECT publisher, place FROM pending WHERE id = ?").all(oldId) as {
        publisher: string;
        place: number;
      }[];
      const place = waiting[0]?.place;
      if (place === undefined) return false;
      this.db.prepare("DELETE FROM outbox WHERE id = ?").run(oldId);
      if (fresh)
        this.insert(
          fresh,
          waiting.map((w) => w.publisher),
          place,
        );
      return true;
    })();
  }

  /** Whether an entry is still waiting for some publisher. */
  has(id: string): boolean {
    return this.db.prepare("SELECT 1 FROM outbox WHERE id = ?").get(id) !== undefined;
  }

  /** The first entry in the queue that a publisher has not acknowledged yet. */
  nextFor(publisher: string): OutboxEntry | undefined {
    return this.db
      .prepare(
        "SELECT o.id, o.seq, o.time, o.expires, o.payload, o.signature FROM pending p JOIN outbox o ON o.id = p.id WHERE p.publisher = ? ORDER BY p.place LIMIT 1",
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
    if (!this.db.open) return;
    // The unused rest of the block goes back: only a crash leaves a gap.
    if (this.nextSeq <= this.reservedSeq) {
      this.db
        .prepare("UPDATE meta SET value = ? WHERE key = 'seq' AND value = ?")
        .run(this.nextSeq - 1, this.reservedSeq);
    }
    this.db.close();
  }
}
