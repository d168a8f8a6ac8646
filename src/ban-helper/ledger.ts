import { mkdirSync } from "node:fs";
import path from "node:path";
import { F2bzError, quote } from "../errors.js";
import { checkTrustedDir } from "../fail2ban/helper-socket.js";
import { type Db, openDatabase } from "../state/database.js";

export const HELPER_LEDGER_FILE = "ban-helper.sqlite";

const MIGRATIONS = [
  `CREATE TABLE banned (
     jail TEXT NOT NULL,
     ip TEXT NOT NULL,
     at INTEGER NOT NULL,
     PRIMARY KEY (jail, ip)
   ) WITHOUT ROWID;`,
];

/**
 * The (jail, ip) pairs this helper banned itself. An UNBAN lifts only these: without it, a caller
 * could lift every ban fail2ban made on its own in an allowed jail. It lives in a directory only root
 * may change (created 0700), since whoever could write it could add the pairs they want to lift.
 */
export class HelperLedger {
  private constructor(private readonly db: Db) {}

  static async open(dir: string): Promise<HelperLedger> {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new F2bzError("IO_FAILED", `cannot create the ban-helper state directory ${quote(dir)}: ${code}`);
    }
    await checkTrustedDir("ban-helper state directory", dir, "IO_FAILED");
    // The file and its WAL are root's alone; a reader could learn what was banned, nothing more.
    const previous = process.umask(0o077);
    try {
      return new HelperLedger(openDatabase(path.join(dir, HELPER_LEDGER_FILE), MIGRATIONS));
    } finally {
      process.umask(previous);
    }
  }

  record(jail: string, ips: readonly string[], now: number): void {
    const insert = this.db.prepare("INSERT OR IGNORE INTO banned (jail, ip, at) VALUES (?, ?, ?)");
    this.db.transaction(() => {
      for (const ip of ips) insert.run(jail, ip, now);
    })();
  }

  /** The addresses of `ips` this helper banned in `jail`. */
  held(jail: string, ips: readonly string[]): string[] {
    const get = this.db.prepare("SELECT 1 FROM banned WHERE jail = ? AND ip = ?").pluck();
    return ips.filter((ip) => get.get(jail, ip) !== undefined);
  }

  remove(jail: string, ips: readonly string[]): void {
    const remove = this.db.prepare("DELETE FROM banned WHERE jail = ? AND ip = ?");
    this.db.transaction(() => {
      for (const ip of ips) remove.run(jail, ip);
    })();
  }

  size(): number {
    return this.db.prepare("SELECT count(*) FROM banned").pluck().get() as number;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
