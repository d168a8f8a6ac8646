import path from "node:path";
import Database from "better-sqlite3";
import { STATE_FILES } from "../../src/state/files.js";

export interface HolderRow {
  jail: string;
  ip: string;
  origin: string;
  id: string;
  expires: number;
  /** The subscriber's only: the jail the event came from. */
  source?: string;
}

/**
 * The holders of bans in a daemon's state file, read as `f2bz status` reads it (a second, read-only
 * connection beside the daemon's): what is on disk, not what the store says it holds. Only those
 * still held at `now` when given.
 */
export function heldIn(daemon: "publisher" | "subscriber", stateDir: string, now?: number): HolderRow[] {
  const db = new Database(path.join(stateDir, STATE_FILES[daemon]), { readonly: true, fileMustExist: true });
  try {
    const columns =
      daemon === "subscriber" ? "jail, ip, origin, source, id, expires" : "jail, ip, origin, id, expires";
    const rows = db
      .prepare(
        `SELECT ${columns} FROM holders ORDER BY jail, ip, origin${daemon === "subscriber" ? ", source" : ""}`,
      )
      .all() as HolderRow[];
    return now === undefined ? rows : rows.filter((r) => r.expires > now);
  } finally {
    db.close();
  }
}
