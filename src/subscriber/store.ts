import path from "node:path";
import { type Db, openDatabase } from "../state/database.js";
import { LEDGER_SCHEMA, pruneLedger, recordApplied, SUBSCRIBER_STATE_FILE } from "../state/ledger.js";

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
];

export interface AppliedBan {
  jail: string;
  ip: string;
  id: string;
  origin: string;
  expires: number;
}

/**
 * The subscriber's durable state: bans it applied with their expiry (fail2ban's `banip` takes no
 * duration, so the subscriber unbans them itself, also after a restart), event ids seen from any
 * publisher, the last sequence number per publisher, and the echo ledger the local monitor reads.
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

  /** Records a ban before it is applied, with its ledger entry, in one transaction. */
  recordBan(ban: AppliedBan): void {
    this.db.transaction(() => {
      // A ban already held keeps the later of both expiries, and the ledger covers that one.
      const { expires } = this.db
        .prepare(
          "INSERT INTO applied (jail, ip, id, origin, expires) VALUES (?, ?, ?, ?, ?) ON CONFLICT (jail, ip) DO UPDATE SET id = excluded.id, origin = excluded.origin, expires = max(expires, excluded.expires) RETURNING expires",
        )
        .get(ban.jail, ban.ip, ban.id, ban.origin, ban.expires) as { expires: number };
      if (this.options.ledger) recordApplied(this.db, "ban", ban.jail, ban.ip, expires);
    })();
  }

  /**
   * Records an unban before it is applied; returns whether the ban was one this subscriber held
   * (and, with `origin`, placed by that origin).
   * Only a held ban gets a ledger entry: an unban the subscriber does not apply must not make the
   * local monitor take fail2ban's own later `Unban` of that address for the cluster's.
   */
  recordUnban(jail: string, ip: string, now: number, origin?: string): boolean {
    return this.db.transaction(() => {
      // An unban event lifts only a ban of its own origin (as at the publisher): one compromised
      // monitor cannot clear the bans of the others. Expiry (no origin) lifts any.
      const held =
        (origin === undefined
          ? this.db.prepare("DELETE FROM applied WHERE jail = ? AND ip = ?").run(jail, ip)
          : this.db
              .prepare("DELETE FROM applied WHERE jail = ? AND ip = ? AND origin = ?")
              .run(jail, ip, origin)
        ).changes === 1;
      if (held && this.options.ledger) recordApplied(this.db, "unban", jail, ip, now);
      return held;
    })();
  }

  /** Bans whose expiry has passed: to unban locally. */
  due(now: number, limit = 500): AppliedBan[] {
    return this.db
      .prepare(
        "SELECT jail, ip, id, origin, expires FROM applied WHERE expires <= ? ORDER BY expires LIMIT ?",
      )
      .all(now, limit) as AppliedBan[];
  }

  nextExpiry(): number | undefined {
    const row = this.db.prepare("SELECT min(expires) AS e FROM applied").get() as { e: number | null };
    return row.e ?? undefined;
  }

  isApplied(jail: string, ip: string): boolean {
    return this.db.prepare("SELECT 1 FROM applied WHERE jail = ? AND ip = ?").get(jail, ip) !== undefined;
  }

  applied(): AppliedBan[] {
    return this.db
      .prepare("SELECT jail, ip, id, origin, expires FROM applied ORDER BY jail, ip")
      .all() as AppliedBan[];
  }

  publisherSeq(endpoint: string): number | undefined {
    const row = this.db.prepare("SELECT seq FROM publishers WHERE endpoint = ?").get(endpoint) as
      | { seq: number }
      | undefined;
    return row?.seq;
  }

  setPublisherSeq(endpoint: string, seq: number): void {
    this.db.prepare("INSERT OR REPLACE INTO publishers (endpoint, seq) VALUES (?, ?)").run(endpoint, seq);
  }

  prune(now: number): void {
    pruneLedger(this.db, now);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
