import Database from "better-sqlite3";
import { F2bzError, quote } from "../errors.js";
import type { SnapshotEntry } from "../protocol/snapshot.js";
import type { Db } from "../state/database.js";

/** Where the last page ended: the primary key of its last holder. */
interface Cursor {
  jail: string;
  ip: string;
  origin: string;
}

type Row = SnapshotEntry & Cursor;

/**
 * One streamed snapshot: the live holders of the publisher's state file, read page by page from a
 * cursor inside one read transaction on a connection of its own. In WAL mode that transaction sees
 * the state as of its first read whatever the publisher writes meanwhile, so the pages and `seq`
 * (read first) describe one and the same moment, and memory holds a page, never the whole set.
 *
 * Threat: an open read transaction stops checkpoints from passing it and the WAL grows; the
 * snapshot server bounds how many are open and for how long, and `close()` ends it.
 */
export class SnapshotReader {
  /** The publisher sequence number the snapshot matches. */
  readonly seq: number;
  private readonly db: Db;
  private readonly first: Database.Statement;
  private readonly next: Database.Statement;
  private cursor: Cursor | undefined;
  private done = false;

  /** True once a page came back short: nothing is left to read. */
  get exhausted(): boolean {
    return this.done;
  }

  constructor(
    file: string,
    private readonly now: number,
  ) {
    try {
      this.db = new Database(file, { readonly: true, fileMustExist: true });
    } catch (error) {
      throw new F2bzError("IO_FAILED", `cannot open state file ${quote(file)}: ${(error as Error).message}`);
    }
    try {
      this.db.pragma("busy_timeout = 5000");
      this.first = this.db.prepare(
        "SELECT jail, ip, origin, payload, signature FROM holders WHERE expires > ? ORDER BY jail, ip, origin LIMIT ?",
      );
      this.next = this.db.prepare(
        "SELECT jail, ip, origin, payload, signature FROM holders WHERE expires > ? AND (jail, ip, origin) > (?, ?, ?) ORDER BY jail, ip, origin LIMIT ?",
      );
      this.db.exec("BEGIN");
      this.seq = (
        this.db.prepare("SELECT value FROM meta WHERE key = 'publisher_seq'").get() as { value: number }
      ).value;
    } catch (error) {
      this.db.close();
      throw error;
    }
  }

  /** The next at most `limit` entries, in primary key order; empty once the snapshot is read. */
  page(limit: number): SnapshotEntry[] {
    if (this.done || !this.db.open) return [];
    const c = this.cursor;
    const rows = (
      c === undefined
        ? this.first.all(this.now, limit)
        : this.next.all(this.now, c.jail, c.ip, c.origin, limit)
    ) as Row[];
    const last = rows.at(-1);
    if (last === undefined || rows.length < limit) this.done = true;
    if (last !== undefined) this.cursor = { jail: last.jail, ip: last.ip, origin: last.origin };
    return rows.map((r) => ({ payload: r.payload, signature: r.signature }));
  }

  /** Ends the read transaction and the connection; idempotent. */
  close(): void {
    if (!this.db.open) return;
    if (this.db.inTransaction) this.db.exec("ROLLBACK");
    this.db.close();
  }
}
