import { accessSync, constants, existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { F2bzError, quote } from "../errors.js";
import { roleOfApplicationId, roleOfStateFile, type StateRole } from "./identity.js";

export type Db = Database.Database;

/**
 * Opens (creating if needed) a daemon's SQLite file in its state directory. WAL with
 * synchronous=FULL: a transaction that returned is on disk, so nothing acknowledged is lost in a crash.
 * `migrations[i]` brings the schema from version i to i + 1; each runs in one transaction.
 *
 * The file is identified before anything is written to it (see identity.ts): a file that is not
 * SQLite, another application's database or another daemon's f2bz file is refused, never reset or
 * migrated into, and left byte for byte as it was.
 */
export function openDatabase(file: string, migrations: readonly string[]): Db {
  const role = roleOfStateFile(file);
  checkWritable(file);
  let db: Db;
  try {
    db = new Database(file);
  } catch (error) {
    throw new F2bzError("IO_FAILED", `cannot open state file ${quote(file)}: ${(error as Error).message}`);
  }
  try {
    const found = identify(db, file, role, migrations);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("busy_timeout = 5000");
    db.pragma("foreign_keys = ON");
    if (found.applicationId !== role.applicationId) db.pragma(`application_id = ${role.applicationId}`);
    for (let version = found.version; version < migrations.length; version++) {
      db.transaction(() => {
        db.exec(migrations[version]!);
        db.pragma(`user_version = ${version + 1}`);
      })();
    }
    return db;
  } catch (error) {
    db.close();
    if (error instanceof F2bzError) throw error;
    throw new F2bzError("IO_FAILED", `cannot open state file ${quote(file)}: ${(error as Error).message}`);
  }
}

/**
 * SQLite reports a read-only directory only as "unable to open database file" (or later, as
 * "attempt to write a readonly database"): say which directory and why, before opening.
 */
function checkWritable(file: string): void {
  const dir = path.dirname(file);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new F2bzError("IO_FAILED", `cannot create state directory ${quote(dir)}: ${reason(error)}`);
  }
  // WAL keeps `-wal` and `-shm` files beside the database: the directory must be writable too.
  for (const target of existsSync(file) ? [dir, file] : [dir]) {
    try {
      accessSync(target, constants.W_OK);
    } catch (error) {
      const what = target === dir ? "state directory" : "state file";
      throw new F2bzError("IO_FAILED", `${what} ${quote(target)} is not writable: ${reason(error)}`);
    }
  }
}

function reason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EROFS") return "read-only file system";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return code ?? String(error);
}

interface Found {
  applicationId: number;
  version: number;
}

/** Reads only: application id, schema version and tables, checked against what `role` expects. */
function identify(db: Db, file: string, role: StateRole, migrations: readonly string[]): Found {
  let found: Found;
  let tables: string[];
  try {
    found = {
      applicationId: db.pragma("application_id", { simple: true }) as number,
      version: db.pragma("user_version", { simple: true }) as number,
    };
    tables = tableNames(db);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "SQLITE_NOTADB" || code === "SQLITE_CORRUPT") {
      throw notOurs(file, role, "not an sqlite database, or a damaged one");
    }
    throw error;
  }
  const { applicationId, version } = found;
  if (applicationId === 0 && version === 0 && tables.length === 0) return found; // A new file.
  if (applicationId !== 0 && applicationId !== role.applicationId) {
    const other = roleOfApplicationId(applicationId);
    throw notOurs(
      file,
      role,
      other ? `it is the ${other.owner}'s` : `application_id 0x${(applicationId >>> 0).toString(16)}`,
    );
  }
  // Files written before the application id was set (id 0) are adopted only when their tables are
  // exactly those of their schema version; the same check catches a damaged file of ours.
  const newer = version > migrations.length;
  const expected = newer ? [] : expectedTables(migrations, version);
  const missing = expected.filter((name) => !tables.includes(name));
  const extra = tables.filter((name) => !expected.includes(name));
  if (applicationId === 0 && (version === 0 || newer || missing.length > 0 || extra.length > 0)) {
    throw notOurs(file, role, `tables ${quote(tables.join(", "))}, schema version ${version}`);
  }
  if (newer) {
    throw new F2bzError(
      "IO_FAILED",
      `state file ${quote(file)} has schema version ${version}, newer than this f2bz (${migrations.length})`,
    );
  }
  if (missing.length > 0) {
    throw new F2bzError(
      "STATE_INVALID",
      `state file ${quote(file)} lacks table ${quote(missing[0])} of schema version ${version}: restore it from a backup or move it away`,
    );
  }
  return found;
}

function notOurs(file: string, role: StateRole, why: string): F2bzError {
  const owner = role.owner === "f2bz" ? "" : ` ${role.owner}`;
  return new F2bzError(
    "STATE_INVALID",
    `state file ${quote(file)} is not an f2bz${owner} state database (${why}); left untouched: move it away or point node.stateDir elsewhere`,
  );
}

function tableNames(db: Db): string[] {
  const rows = db
    .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
    .all() as { name: string }[];
  return rows.map((row) => row.name).sort();
}

const schemaCache = new WeakMap<readonly string[], Map<number, string[]>>();

/** The tables of schema `version`: the migrations up to it, run on an empty in-memory database. */
function expectedTables(migrations: readonly string[], version: number): string[] {
  let byVersion = schemaCache.get(migrations);
  if (!byVersion) {
    byVersion = new Map();
    schemaCache.set(migrations, byVersion);
  }
  const cached = byVersion.get(version);
  if (cached) return cached;
  const memory = new Database(":memory:");
  try {
    for (const migration of migrations.slice(0, version)) memory.exec(migration);
    const names = tableNames(memory);
    byVersion.set(version, names);
    return names;
  } finally {
    memory.close();
  }
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
