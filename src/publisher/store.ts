import path from "node:path";
import { type Db, openDatabase } from "../state/database.js";

const MIGRATIONS = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  INSERT INTO meta (key, value) VALUES ('publisher_seq', 0);
  CREATE TABLE active (
    jail TEXT NOT NULL,
    ip TEXT NOT NULL,
    id TEXT NOT NULL,
    origin TEXT NOT NULL,
    expires INTEGER NOT NULL,
    payload BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (jail, ip)
  ) WITHOUT ROWID;
  CREATE INDEX active_expires ON active (expires);
  CREATE TABLE seen (id TEXT PRIMARY KEY, time INTEGER NOT NULL) WITHOUT ROWID;
  CREATE INDEX seen_time ON seen (time);
  CREATE TABLE origins (origin TEXT PRIMARY KEY, high INTEGER NOT NULL) WITHOUT ROWID;
  `,
];

export const PUBLISHER_STATE_FILE = "publisher.sqlite3";

export interface StoredEvent {
  id: string;
  origin: string;
  seq: number;
  kind: "ban" | "unban";
  jail: string;
  ip: string;
  time: number;
  expires: number;
}

export type AcceptOutcome =
  /** New state: broadcast with this publisher sequence number. */
  | { type: "broadcast"; publisherSeq: number }
  /** Already seen (a monitor's resend after a lost ack): acknowledge again, do nothing. */
  | { type: "duplicate" }
  /** A ban already active for this ip and jail (another node saw it too): ack, no re-broadcast. */
  | { type: "already-active" }
  /** Changes nothing: an unban of a ban not active here, or a ban whose expiry already passed. */
  | { type: "no-change" }
  /**
   * An unban by another node than the one whose ban is active: acknowledged, not applied. Only the
   * origin of a ban may lift it early, so one compromised monitor cannot clear everyone's bans.
   */
  | { type: "not-origin" };

export interface Expiry {
  jail: string;
  ip: string;
  id: string;
  publisherSeq: number;
}

export interface SnapshotEntry {
  payload: Buffer;
  signature: Buffer;
}

/**
 * The publisher's durable state: active bans (with the signed bytes, served in snapshots), seen
 * event ids, per-origin high-water marks and the publisher's own sequence number. Every method is
 * one transaction, so a crash never leaves an acknowledged event half-stored.
 */
export class PublisherStore {
  private readonly db: Db;

  constructor(stateDir: string) {
    this.db = openDatabase(path.join(stateDir, PUBLISHER_STATE_FILE), MIGRATIONS);
  }

  private nextSeq(): number {
    const row = this.db
      .prepare("UPDATE meta SET value = value + 1 WHERE key = 'publisher_seq' RETURNING value")
      .get() as { value: number };
    return row.value;
  }

  get publisherSeq(): number {
    return (this.db.prepare("SELECT value FROM meta WHERE key = 'publisher_seq'").get() as { value: number })
      .value;
  }

  hasSeen(id: string): boolean {
    return this.db.prepare("SELECT 1 FROM seen WHERE id = ?").get(id) !== undefined;
  }

  /**
   * Records an event and says whether subscribers must hear of it. `event.expires` is the expiry
   * the publisher holds the ban to (the caller caps it); the signed bytes are stored unchanged.
   *
   * Invariant: the expiry of an active row is the one its stored payload carries (or less, when
   * capped), never more. A later ban for an active (jail, ip) is absorbed without extending it:
   * subscribers never heard of the extension and lift the ban at the earlier expiry, and a
   * publisher that believed it still active would then absorb the next real ban of that address,
   * leaving the cluster without it. Re-broadcasting extensions instead would re-open the echo loop
   * (DESIGN §5 (3)): each echoed ban carries a slightly later expiry.
   */
  accept(event: StoredEvent, payload: Buffer, signature: Buffer, now: number): AcceptOutcome {
    return this.db.transaction((): AcceptOutcome => {
      if (this.hasSeen(event.id)) return { type: "duplicate" };
      this.db.prepare("INSERT INTO seen (id, time) VALUES (?, ?)").run(event.id, event.time);
      this.db
        .prepare(
          "INSERT INTO origins (origin, high) VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET high = max(high, excluded.high)",
        )
        .run(event.origin, event.seq);
      const active = this.db
        .prepare("SELECT expires, origin FROM active WHERE jail = ? AND ip = ?")
        .get(event.jail, event.ip) as { expires: number; origin: string } | undefined;
      const live = active !== undefined && active.expires > now;
      if (event.kind === "ban") {
        if (live) return { type: "already-active" };
        if (event.expires <= now) return { type: "no-change" };
        this.db
          .prepare(
            "INSERT OR REPLACE INTO active (jail, ip, id, origin, expires, payload, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
          )
          .run(event.jail, event.ip, event.id, event.origin, event.expires, payload, signature);
      } else {
        if (!active) return { type: "no-change" };
        if (active.origin !== event.origin) return { type: "not-origin" };
        this.db.prepare("DELETE FROM active WHERE jail = ? AND ip = ?").run(event.jail, event.ip);
        // An expired row not pruned yet is announced by this unban instead of by an expiry.
      }
      return { type: "broadcast", publisherSeq: this.nextSeq() };
    })();
  }

  /** Removes expired bans, each with its own publisher sequence number to announce. */
  pruneExpired(now: number): Expiry[] {
    return this.db.transaction((): Expiry[] => {
      const rows = this.db
        .prepare("SELECT jail, ip, id FROM active WHERE expires <= ? ORDER BY expires LIMIT 1000")
        .all(now) as { jail: string; ip: string; id: string }[];
      const expiries: Expiry[] = [];
      for (const row of rows) {
        this.db.prepare("DELETE FROM active WHERE jail = ? AND ip = ?").run(row.jail, row.ip);
        expiries.push({ ...row, publisherSeq: this.nextSeq() });
      }
      return expiries;
    })();
  }

  /** Forgets seen ids older than `before`: events that old are refused as stale anyway. */
  pruneSeen(before: number): void {
    this.db.prepare("DELETE FROM seen WHERE time < ?").run(before);
  }

  /** The active bans and the publisher sequence number they correspond to, read atomically. */
  snapshot(now: number): { publisherSeq: number; entries: SnapshotEntry[] } {
    return this.db.transaction(() => ({
      publisherSeq: this.publisherSeq,
      entries: this.db
        .prepare("SELECT payload, signature FROM active WHERE expires > ? ORDER BY jail, ip")
        .all(now) as SnapshotEntry[],
    }))();
  }

  /** The highest sequence number accepted from `origin`, or 0. */
  highWaterMark(origin: string): number {
    const row = this.db.prepare("SELECT high FROM origins WHERE origin = ?").get(origin) as
      | { high: number }
      | undefined;
    return row?.high ?? 0;
  }

  activeCount(): number {
    return (this.db.prepare("SELECT count(*) AS n FROM active").get() as { n: number }).n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
