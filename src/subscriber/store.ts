import path from "node:path";
import { type Db, openDatabase } from "../state/database.js";
import { SUBSCRIBER_STATE_FILE } from "../state/files.js";
import { LEDGER_SCHEMA, pruneLedger, recordApplied } from "../state/ledger.js";

const MIGRATIONS = [
  `
  CREATE TABLE applied (
    jail TEXT NOT NULL,
    ip TEXT NOT NULL,
    id TEXT NOT NULL,
    origin TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (jail, ip)
  ) WITHOUT ROWID;
  CREATE INDEX applied_expires ON applied (expires);
  CREATE TABLE seen (id TEXT PRIMARY KEY, time INTEGER NOT NULL) WITHOUT ROWID;
  CREATE INDEX seen_time ON seen (time);
  CREATE TABLE publishers (endpoint TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
  ${LEDGER_SCHEMA}
  `,
  // A ban has holders: every origin that banned the address keeps its own id and expiry, per
  // local jail and ip, and the address is lifted only when the last one unbans or expires. Before,
  // one row per (jail, ip) let another origin's unban lift it. `source` is the event's own jail
  // (several map to one local jail): an origin's unban lifts only its hold from that jail. A row
  // kept from schema 1 has no known source (''): its origin's unban from any jail lifts it.
  `
  CREATE TABLE holders (
    jail TEXT NOT NULL,
    ip TEXT NOT NULL,
    origin TEXT NOT NULL,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (jail, ip, origin, source)
  ) WITHOUT ROWID;
  INSERT INTO holders (jail, ip, origin, source, id, expires)
    SELECT jail, ip, origin, '', id, expires FROM applied;
  DROP TABLE applied;
  CREATE INDEX holders_expires ON holders (expires);
  CREATE INDEX holders_id ON holders (id);
  `,
  // A publisher's sequence is kept under its pinned key (hex), not its feed endpoint, which a
  // config edit renames; the endpoint stays beside it for \`f2bz status\`. Rows of schema 2 have no
  // name until adoptPublishers gives them the key configured at their endpoint.
  `
  ALTER TABLE publishers ADD COLUMN name TEXT;
  CREATE UNIQUE INDEX publishers_name ON publishers (name);
  `,
];

/** A configured publisher: its pinned key (hex) names it, `feed` is where it is reached now. */
export interface FeedPublisher {
  name: string;
  feed: string;
}

/** One origin's hold on a ban applied here. */
export interface Holder {
  /** The local jail the ban is applied in. */
  jail: string;
  ip: string;
  origin: string;
  /** The event's own jail. */
  source: string;
  id: string;
  expires: number;
}

/** A ban applied here, as its longest holder holds it. */
export interface AppliedBan {
  jail: string;
  ip: string;
  id: string;
  origin: string;
  expires: number;
}

/** Which holds to release: an origin's unban (of its ban from `source`), or one event id. */
export type Release =
  | { jail: string; ip: string; origin: string; source: string }
  | { ip: string; id: string };

export interface Released {
  /** Holds removed. */
  removed: number;
  /** Bans whose last holder went: to unban locally. */
  lifted: AppliedBan[];
}

/**
 * The subscriber's durable state: the holders of each ban it applied, with their expiry (fail2ban's
 * `banip` takes no duration, so the subscriber unbans itself, also after a restart), event ids
 * seen from any publisher, the last sequence number per publisher, and the echo ledger the local
 * monitor reads.
 *
 * Invariant: the local jail bans an address from its first holder to the last one's release; only
 * those two moments reach fail2ban, so a holder added to a ban already applied calls nothing (no
 * `Ban` line, no echo).
 */
export class SubscriberStore {
  readonly db: Db;

  /**
   * `ledger: false` when nothing the subscriber does reaches the local fail2ban (dry run, the log
   * action): a `Ban` line there is then fail2ban's own and must be published.
   */
  constructor(
    stateDir: string,
    private readonly options: { ledger: boolean } = { ledger: true },
  ) {
    this.db = openDatabase(path.join(stateDir, SUBSCRIBER_STATE_FILE), MIGRATIONS);
  }

  /**
   * Records an event id; false when it was already seen (the same event via another publisher, or
   * again in a snapshot). `keepUntil` is the event's time, or for a ban its expiry: a ban stays in
   * every snapshot until it expires, and must not be applied again each time it comes back.
   */
  markSeen(id: string, keepUntil: number): boolean {
    return (
      this.db.prepare("INSERT OR IGNORE INTO seen (id, time) VALUES (?, ?)").run(id, keepUntil).changes === 1
    );
  }

  hasSeen(id: string): boolean {
    return this.db.prepare("SELECT 1 FROM seen WHERE id = ?").get(id) !== undefined;
  }

  /** Forgets ids kept until before `before` (called with now minus twice the window). */
  pruneSeen(before: number): void {
    this.db.prepare("DELETE FROM seen WHERE time < ?").run(before);
  }

  /**
   * Records a hold before anything is applied, with its ledger entry, in one transaction. Returns
   * whether it is the ban's first holder: only then is the ban applied locally.
   */
  addHolder(holder: Holder): boolean {
    return this.db.transaction(() => {
      const first = !this.isApplied(holder.jail, holder.ip);
      // The same origin's hold from the same jail again (a new id after its expiry elsewhere, or
      // through another publisher) keeps the later expiry.
      this.db
        .prepare(
          "INSERT INTO holders (jail, ip, origin, source, id, expires) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (jail, ip, origin, source) DO UPDATE SET id = excluded.id, expires = excluded.expires WHERE excluded.expires > expires",
        )
        .run(holder.jail, holder.ip, holder.origin, holder.source, holder.id, holder.expires);
      if (this.options.ledger) {
        // Covers the ban until its last holder's expiry: fail2ban may lift it on its own before.
        const { until } = this.db
          .prepare("SELECT max(expires) AS until FROM holders WHERE jail = ? AND ip = ?")
          .get(holder.jail, holder.ip) as { until: number };
        recordApplied(this.db, "ban", holder.jail, holder.ip, until);
      }
      return first;
    })();
  }

  /**
   * Releases holds and returns the bans left without a holder, each recorded in the ledger as an
   * unban before it is applied. Only a lifted ban gets a ledger entry: an unban the subscriber
   * does not apply must not make the local monitor take fail2ban's own later `Unban` of that
   * address for the cluster's.
   */
  release(which: Release, now: number): Released {
    return this.db.transaction((): Released => {
      const rows = (
        "id" in which
          ? this.db
              .prepare("SELECT jail, ip, origin, source FROM holders WHERE id = ? AND ip = ?")
              .all(which.id, which.ip)
          : this.db
              .prepare(
                "SELECT jail, ip, origin, source FROM holders WHERE jail = ? AND ip = ? AND origin = ? AND source IN (?, '')",
              )
              .all(which.jail, which.ip, which.origin, which.source)
      ) as Omit<Holder, "id" | "expires">[];
      return this.removeRows(rows, now);
    })();
  }

  /** Releases every hold whose expiry has passed (at most `limit`). */
  expire(now: number, limit = 500): Released {
    return this.db.transaction((): Released => {
      const rows = this.db
        .prepare("SELECT jail, ip, origin, source FROM holders WHERE expires <= ? ORDER BY expires LIMIT ?")
        .all(now, limit) as Omit<Holder, "id" | "expires">[];
      return this.removeRows(rows, now);
    })();
  }

  private removeRows(rows: readonly Omit<Holder, "id" | "expires">[], now: number): Released {
    const remove = this.db.prepare(
      "DELETE FROM holders WHERE jail = ? AND ip = ? AND origin = ? AND source = ? RETURNING id, expires",
    );
    const lifted = new Map<string, AppliedBan>();
    for (const row of rows) {
      const gone = remove.get(row.jail, row.ip, row.origin, row.source) as { id: string; expires: number };
      lifted.set(`${row.jail} ${row.ip}`, { jail: row.jail, ip: row.ip, origin: row.origin, ...gone });
    }
    const out = [...lifted.values()].filter((ban) => !this.isApplied(ban.jail, ban.ip));
    if (this.options.ledger) for (const ban of out) recordApplied(this.db, "unban", ban.jail, ban.ip, now);
    return { removed: rows.length, lifted: out };
  }

  nextExpiry(): number | undefined {
    const row = this.db.prepare("SELECT min(expires) AS e FROM holders").get() as { e: number | null };
    return row.e ?? undefined;
  }

  isApplied(jail: string, ip: string): boolean {
    return this.db.prepare("SELECT 1 FROM holders WHERE jail = ? AND ip = ?").get(jail, ip) !== undefined;
  }

  /** How many bans are applied here (each address and jail once): read at each metrics scrape. */
  appliedCount(): number {
    const row = this.db.prepare("SELECT count(*) AS n FROM (SELECT 1 FROM holders GROUP BY jail, ip)").get();
    return (row as { n: number }).n;
  }

  /** Every ban applied here, once each, as its longest holder holds it. */
  applied(): AppliedBan[] {
    return this.db
      .prepare(
        "SELECT jail, ip, id, origin, max(expires) AS expires FROM holders GROUP BY jail, ip ORDER BY jail, ip",
      )
      .all() as AppliedBan[];
  }

  /**
   * Names the configured publishers by key: a row written when they were named by endpoint goes to
   * the key configured at that endpoint now; each key's row moves to its current endpoint; rows of
   * publishers no longer configured go.
   */
  adoptPublishers(publishers: readonly FeedPublisher[]): void {
    this.db.transaction(() => {
      for (const p of publishers) {
        this.db
          .prepare("UPDATE OR IGNORE publishers SET name = ? WHERE endpoint = ? AND name IS NULL")
          .run(p.name, p.feed);
      }
      const names = JSON.stringify(publishers.map((p) => p.name));
      this.db
        .prepare("DELETE FROM publishers WHERE name IS NULL OR name NOT IN (SELECT value FROM json_each(?))")
        .run(names);
      // Endpoints may have been swapped between keys: each row leaves its old one before any takes a new one.
      this.db.prepare("UPDATE publishers SET endpoint = '#' || name").run();
      for (const p of publishers) {
        this.db.prepare("UPDATE publishers SET endpoint = ? WHERE name = ?").run(p.feed, p.name);
      }
    })();
  }

  publisherSeq(name: string): number | undefined {
    const row = this.db.prepare("SELECT seq FROM publishers WHERE name = ?").get(name) as
      | { seq: number }
      | undefined;
    return row?.seq;
  }

  setPublisherSeq(publisher: FeedPublisher, seq: number): void {
    this.db.transaction(() => {
      this.db
        .prepare("DELETE FROM publishers WHERE name = ? OR endpoint = ?")
        .run(publisher.name, publisher.feed);
      this.db
        .prepare("INSERT INTO publishers (endpoint, seq, name) VALUES (?, ?, ?)")
        .run(publisher.feed, seq, publisher.name);
    })();
  }

  prune(now: number): void {
    pruneLedger(this.db, now);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
