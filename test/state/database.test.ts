import { readFile } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import Database from "better-sqlite3";
import { F2bzError } from "../../src/errors.js";
import { PublisherStore } from "../../src/publisher/store.js";
import { openDatabase } from "../../src/state/database.js";
import { tempDir } from "../helpers/temp-dir.js";

/** How a daemon's state file is recognised as its own (src/state/identity.ts). */

const MIGRATIONS = ["CREATE TABLE a (x INTEGER);", "CREATE TABLE b (y INTEGER);"];
const applicationId = (file: string): number => {
  const db = new Database(file, { readonly: true });
  try {
    return db.pragma("application_id", { simple: true }) as number;
  } finally {
    db.close();
  }
};

test("a new publisher state file carries the publisher's application id, 'f2bP'", async (t) => {
  const dir = await tempDir(t);
  new PublisherStore(dir).close();
  const id = applicationId(path.join(dir, "publisher.sqlite3"));
  const bytes = Buffer.alloc(4);
  bytes.writeInt32BE(id);
  t.is(bytes.toString("ascii"), "f2bP");
});

test("a state file written before application ids (id 0, the tables of its version) is adopted and stamped", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "publisher.sqlite3");
  new PublisherStore(dir).close();
  const old = new Database(file);
  old.pragma("application_id = 0");
  old.close();
  const store = new PublisherStore(dir);
  t.is(store.publisherSeq, 0);
  store.close();
  t.not(applicationId(file), 0);
});

test("a file of ours that lacks a table of its schema version is refused, not repaired by guessing", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "x.sqlite3");
  openDatabase(file, MIGRATIONS).close();
  const db = new Database(file);
  db.exec("DROP TABLE b");
  db.close();
  const before = await readFile(file);
  const error = t.throws(() => openDatabase(file, MIGRATIONS), { instanceOf: F2bzError });
  t.is(error?.code, "STATE_INVALID");
  t.regex(error?.message ?? "", /^state file '.*x\.sqlite3' lacks table 'b' of schema version 2: /);
  t.deepEqual(await readFile(file), before);
});

test("a state file of a newer f2bz (higher schema version) is refused", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "x.sqlite3");
  openDatabase(file, MIGRATIONS).close();
  const error = t.throws(() => openDatabase(file, MIGRATIONS.slice(0, 1)), { instanceOf: F2bzError });
  t.regex(error?.message ?? "", /has schema version 2, newer than this f2bz \(1\)$/);
});

test("an id-less SQLite file with no tables but a schema version is not taken for a new one", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "subscriber.sqlite3");
  const db = new Database(file);
  db.pragma("user_version = 7");
  db.close();
  const error = t.throws(() => openDatabase(file, MIGRATIONS), { instanceOf: F2bzError });
  t.is(error?.code, "STATE_INVALID");
  t.regex(error?.message ?? "", /is not an f2bz subscriber state database/);
});
