import { existsSync, readFileSync } from "node:fs";
import Database from "better-sqlite3";
import { type Db, openReadOnly } from "./database.js";

/**
 * Opens another daemon's state file for one look (`f2bz status`) without leaving anything behind.
 *
 * Why not always `openReadOnly`: SQLite creates the `-wal` and `-shm` files of a WAL database for
 * a reader too when they do not exist, i.e. when the daemon is stopped. Run as root, that leaves
 * root-owned files in the daemon's state directory, and the daemon (user f2bz) then cannot write
 * its own database. So:
 * - a daemon that runs has both files: open read-only, sharing them (nothing is created);
 * - a stopped daemon has checkpointed everything into the main file: read that file into memory.
 * Undefined when the file cannot be opened. A daemon that starts or stops in between can make one
 * read fail (reported as unreadable); it never changes the state files.
 */
export function openForInspection(file: string): Db | undefined {
  if (existsSync(`${file}-wal`) && existsSync(`${file}-shm`)) return openReadOnly(file);
  try {
    const bytes = readFileSync(file);
    // The header's read/write versions say WAL (2); in memory there is no WAL: legacy (1).
    if (bytes.length >= 100 && bytes[18] === 2 && bytes[19] === 2) {
      bytes[18] = 1;
      bytes[19] = 1;
    }
    return new Database(bytes, { readonly: true });
  } catch {
    return undefined;
  }
}
