import path from "node:path";
import { type Db, openDatabase } from "../state/database.js";
import { PUBLISHER_STATE_FILE } from "../state/files.js";

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
  // A ban has holders: every origin that banned (jail, ip) keeps its own id, expiry and signed
  // bytes, and the address is lifted only when the last one unbans or expires. Before, one row per
  // (jail, ip) let another origin's unban or shorter ban lift it. Each old row becomes its holder.
  `
  CREATE TABLE holders (
    jail TEXT NOT NULL,
    ip TEXT NOT NULL,
    origin TEXT NOT NULL,
    id TEXT NOT NULL,
    expires INTEGER NOT NULL,
    payload BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (jail, ip, origin)
  ) WITHOUT ROWID;
  INSERT INTO holders (jail, ip, origin, id, expires, payload, signature)
    SELECT jail, ip, origin, id, expires, payload, signature FROM active;
  DROP TABLE active;
  CREATE INDEX holders_expires ON holders (expires);
  CREATE INDEX holders_origin ON holders (origin);
  `,
];

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
  /** New state (a new holder, or a holder lifted): broadcast with this publisher sequence number. */
  | { type: "broadcast"; publisherSeq: number }
  /** Already seen (a monitor's resend after a lost ack): acknowledge again, do nothing. */
  | { type: "duplicate" }
  /** This origin already holds a live ban of this ip and jail: ack, no re-broadcast. */
  | { type: "already-active" }
  /** Changes nothing: an unban of a ban not held here, or a ban whose expiry already passed. */
  | { type: "no-change" }
  /**
   * An unban by a node that holds no ban of the address while others do: acknowledged, not applied.
   * Only a holder may lift its own hold, so one compromised monitor cannot clear everyone's bans.
   */
  | { type: "not-origin" }
  /** A new holder from an origin already at its cap of active bans: refused, not recorded as seen. */
  | { type: "over-limit"; active: number };

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

export interface AcceptLimits {
  /** Live holders one origin may have; a new one beyond is refused (publisher.maxActivePerOrigin). */
  maxActivePerOrigin?: number;
}

/**
 * The publisher's durable state: the holders of every active ban (with their signed bytes, served
 * in snapshots), seen event ids, per-origin high-water marks and the publisher's own sequence
 * number. Every method is one transaction, so a crash never leaves an acknowledged event half-stored.
 *
 * Invariant: a subscriber that applied every broadcast holds, per (jail, ip), exactly the holders
 * stored here. So every change of the holder set is broadcast (a new origin's ban of an address
 * already banned too: absorbing it would let the first holder's unban or expiry lift the address at
 * the subscribers while this publisher still holds it), and nothing else is. That broadcast does
 * not re-open the echo loop (DESIGN §5 (3)): a subscriber that already holds the address adds the
 * holder without calling fail2ban, so no host logs a new `Ban`, and each origin adds at most one
 * holder per (jail, ip).
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
   * Invariant: a holder's expiry is the one its stored payload carries (or less, when capped),
   * never more. A later ban by the same origin while its hold is live is absorbed without extending
   * it: subscribers never heard of the extension and drop the holder at the earlier expiry.
   */
  accept(
    event: StoredEvent,
    payload: Buffer,
    signature: Buffer,
    now: number,
    limits: AcceptLimits = {},
  ): AcceptOutcome {
    return this.db.transaction((): AcceptOutcome => {
      if (this.hasSeen(event.id)) return { type: "duplicate" };
      const own = this.db
        .prepare("SELECT expires FROM holders WHERE jail = ? AND ip = ? AND origin = ?")
        .get(event.jail, event.ip, event.origin) as { expires: number } | undefined;
      if (event.kind === "ban" && own === undefined && event.expires > now && limits.maxActivePerOrigin) {
        const active = this.activeOf(event.origin);
        // Threat: one authorized but compromised monitor filling the state, every snapshot and
        // every subscriber's firewall. Not marked seen: the same event may come back once below.
        if (active >= limits.maxActivePerOrigin) return { type: "over-limit", active };
      }
      this.db.prepare("INSERT INTO seen (id, time) VALUES (?, ?)").run(event.id, event.time);
      this.db
        .prepare(
          "INSERT INTO origins (origin, high) VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET high = max(high, excluded.high)",
        )
        .run(event.origin, event.seq);
      if (event.kind === "ban") {
        if (own !== undefined && own.expires > now) return { type: "already-active" };
        if (event.expires <= now) return { type: "no-change" };
        // An expired hold of this origin not pruned yet is replaced, and announced by this ban.
        this.db
          .prepare(
            "INSERT OR REPLACE INTO holders (jail, ip, origin, id, expires, payload, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
          )
          .run(event.jail, event.ip, event.origin, event.id, event.expires, payload, signature);
      } else {
        if (own === undefined) {
          const others = this.db
            .prepare("SELECT 1 FROM holders WHERE jail = ? AND ip = ?")
            .get(event.jail, event.ip);
          return { type: others === undefined ? "no-change" : "not-origin" };
        }
        this.db
          .prepare("DELETE FROM holders WHERE jail = ? AND ip = ? AND origin = ?")
          .run(event.jail, event.ip, event.origin);
        // An expired hold not pruned yet is announced by this unban instead of by an expiry.
      }
      return { type: "broadcast", publisherSeq: this.nextSeq() };
    })();
  }

  /**
   * Runs `fn` as one transaction (group commit): the `accept` calls inside become savepoints, and
   * the batch reaches the disk with one fsync when `fn` returns; a throw rolls all of it back.
   */
  inOneTransaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** Removes expired holders, each with its own publisher sequence number to announce. */
  pruneExpired(now: number): Expiry[] {
    return this.removeHolders("expires <= ? ORDER BY expires LIMIT 1000", now);
  }

  /**
   * Removes every holder of `origin` (a revoked monitor, `keys revoke --purge-bans`), each with
   * its own publisher sequence number to announce as an expiry: the publisher cannot sign an unban
   * as the origin, and a subscriber lifts on an expiry only the hold of that very event id.
   */
  purgeOrigin(origin: string): Expiry[] {
    return this.removeHolders("origin = ? ORDER BY jail, ip", origin);
  }

  private removeHolders(where: string, param: string | number): Expiry[] {
    return this.db.transaction((): Expiry[] => {
      const rows = this.db.prepare(`SELECT jail, ip, origin, id FROM holders WHERE ${where}`).all(param) as {
        jail: string;
        ip: string;
        origin: string;
        id: string;
      }[];
      const remove = this.db.prepare("DELETE FROM holders WHERE jail = ? AND ip = ? AND origin = ?");
      return rows.map((row) => {
        remove.run(row.jail, row.ip, row.origin);
        return { jail: row.jail, ip: row.ip, id: row.id, publisherSeq: this.nextSeq() };
      });
    })();
  }

  /** Forgets seen ids older than `before`: events that old are refused as stale anyway. */
  pruneSeen(before: number): void {
    this.db.prepare("DELETE FROM seen WHERE time < ?").run(before);
  }

  /**
   * Every live holder's signed ban and the publisher sequence number they correspond to, read
   * atomically: a subscriber that applies them holds what this publisher holds.
   */
  snapshot(now: number): { publisherSeq: number; entries: SnapshotEntry[] } {
    return this.db.transaction(() => ({
      publisherSeq: this.publisherSeq,
      entries: this.db
        .prepare("SELECT payload, signature FROM holders WHERE expires > ? ORDER BY jail, ip, origin")
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

  /** Banned (jail, ip) pairs, each counted once whatever its number of holders. */
  activeCount(): number {
    return (
      this.db.prepare("SELECT count(*) AS n FROM (SELECT 1 FROM holders GROUP BY jail, ip)").get() as {
        n: number;
      }
    ).n;
  }

  /** Holders `origin` has (expired ones not pruned yet included: they go within a second). */
  activeOf(origin: string): number {
    return (
      this.db.prepare("SELECT count(*) AS n FROM holders WHERE origin = ?").get(origin) as { n: number }
    ).n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
