import { type Db, openReadOnly } from "../state/database.js";
import { wasAppliedByCluster } from "../state/ledger.js";

/** The subscriber's ledger on this host, opened read-only once the subscriber has created it. */
export class LedgerReader {
  private db: Db | undefined;

  constructor(private readonly file: string) {}

  applied(kind: "ban" | "unban", jail: string, ip: string, now: number): boolean {
    this.db ??= openReadOnly(this.file);
    if (!this.db) return false;
    try {
      return wasAppliedByCluster(this.db, kind, jail, ip, now);
    } catch {
      // The subscriber's file exists but has no ledger yet (being created): nothing applied.
      this.db.close();
      this.db = undefined;
      return false;
    }
  }

  close(): void {
    this.db?.close();
  }
}
