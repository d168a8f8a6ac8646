import { mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { F2bzError, quote } from "../errors.js";

export type Db = Database.Database;

/**
 * Opens (creating if needed) a daemon's SQLite file in its state directory. WAL with
 * synchronous=FULL: a transaction that returned is on disk, so nothing acknowledged is lost in a crash.
 * `migrations[i]` brings the schema from version i to i + 1; each runs in one transaction.
 */
export function openDatabase(file: string, migrations: readonly string[]): Db {
  let db: Db;
  try {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    db = new Database(file);
  } catch (error) {
    throw new F2bzError("IO_FAILED", `cannot open state file ${quote(file)}: ${(error as Error).message}`);
  }
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  db.pragma("foreign_keys = ON");
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > migrations.length) {
    db.close();
    throw new F2bzError(
      "IO_FAILED",
      `state file ${quote(file)} has schema version ${current}, newer than this f2bz (${migrations.length})`,
    );
  }
  for (let version = current; version < migrations.length; version++) {
    db.transaction(() => {
      db.exec(migrations[version]!);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
  return db;
}

/** Opens another daemon's state file read-only, or returns undefined when it does not exist yet. */
export function openReadOnly(file: string): Db | undefined {
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma("busy_timeout = 2000");
    return db;
  } catch {
    return undefined;
  }
}
