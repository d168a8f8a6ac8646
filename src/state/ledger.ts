import type { Db } from "./database.js";

/**
 * The echo ledger: bans and unbans the subscriber applied from the cluster. The subscriber writes
 * it in its state file BEFORE calling fail2ban; the monitor on the same host reads it read-only, so
 * the `Ban`/`Unban` line fail2ban then writes is not published again. A core module: neither daemon
 * imports the other.
 */
export const LEDGER_SCHEMA = `
CREATE TABLE ledger (
  jail TEXT NOT NULL,
  ip TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('ban', 'unban')),
  until INTEGER NOT NULL,
  PRIMARY KEY (jail, ip, kind)
) WITHOUT ROWID;
`;

/** Grace after a ban's expiry or an unban during which its log lines are still the cluster's. */
export const LEDGER_GRACE_MS = 10 * 60_000;

/**
 * Records an applied ban (held until its expiry plus grace: fail2ban may unban it earlier on its
 * own, and that `Unban` must not travel either) or an applied unban.
 */
export function recordApplied(db: Db, kind: "ban" | "unban", jail: string, ip: string, until: number): void {
  db.prepare("INSERT OR REPLACE INTO ledger (jail, ip, kind, until) VALUES (?, ?, ?, ?)").run(
    jail,
    ip,
    kind,
    until + LEDGER_GRACE_MS,
  );
}

export function pruneLedger(db: Db, now: number): void {
  db.prepare("DELETE FROM ledger WHERE until < ?").run(now);
}

/**
 * Whether a `Ban` or `Unban` line for (jail, ip) was caused by this host's subscriber. Any unban of
 * a cluster ban counts (expiry inside fail2ban, or the subscriber's own unban).
 */
export function wasAppliedByCluster(
  db: Db,
  kind: "ban" | "unban",
  jail: string,
  ip: string,
  now: number,
): boolean {
  const sql =
    kind === "ban"
      ? "SELECT 1 FROM ledger WHERE jail = ? AND ip = ? AND kind = 'ban' AND until >= ?"
      : "SELECT 1 FROM ledger WHERE jail = ? AND ip = ? AND until >= ?";
  return db.prepare(sql).get(jail, ip, now) !== undefined;
}
