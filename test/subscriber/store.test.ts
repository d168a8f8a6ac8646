import path from "node:path";
import test from "ava";
import Database from "better-sqlite3";
import { SUBSCRIBER_STATE_FILE } from "../../src/state/files.js";
import { LEDGER_GRACE_MS, LEDGER_SCHEMA, wasAppliedByCluster } from "../../src/state/ledger.js";
import { SubscriberStore } from "../../src/subscriber/store.js";
import { heldIn } from "../helpers/state.js";
import { tempDir } from "../helpers/temp-dir.js";

const T = 1_800_000_000_000;
const ORIGIN = "0123456789abcdef0123456789abcdef";

async function open(t: import("ava").ExecutionContext): Promise<{ store: SubscriberStore; dir: string }> {
  const dir = await tempDir(t, "f2bz-substore-");
  const store = new SubscriberStore(dir);
  t.teardown(() => store.close());
  return { store, dir };
}

const OTHER = "fedcba9876543210fedcba9876543210";
/** A publisher's name in the state file: its pinned key, hex. */
const PUB = "ab".repeat(32);
const hold = (ip: string, origin: string, seq: number, expires: number, source = "sshd", jail = "f2bz") => ({
  jail,
  ip,
  origin,
  source,
  id: `${origin}:${seq}`,
  expires,
});

test("the first holder applies a ban; the same origin again keeps the later expiry, in the echo ledger too", async (t) => {
  const { store, dir } = await open(t);
  t.true(store.addHolder(hold("192.0.2.1", ORIGIN, 1, T + 60_000)), "first holder: apply");
  t.false(store.addHolder(hold("192.0.2.1", ORIGIN, 2, T + 10_000)), "already applied");
  t.deepEqual(
    heldIn("subscriber", dir).map((h) => [h.ip, h.id, h.expires]),
    [["192.0.2.1", `${ORIGIN}:1`, T + 60_000]],
  );
  const atEnd = T + 60_000 + LEDGER_GRACE_MS;
  t.true(wasAppliedByCluster(store.db, "ban", "f2bz", "192.0.2.1", atEnd), "covered until the later expiry");
  t.false(wasAppliedByCluster(store.db, "ban", "f2bz", "192.0.2.1", atEnd + 1));
  t.is(store.nextExpiry(), T + 60_000);
  t.deepEqual(store.expire(T + 59_999), { removed: 0, lifted: [] });
  t.deepEqual(
    store.expire(T + 60_000).lifted.map((b) => b.ip),
    ["192.0.2.1"],
  );
});

test("an unban releases only its origin's hold; the ban is lifted, and ledgered, with the last one", async (t) => {
  const { store } = await open(t);
  t.deepEqual(store.release({ jail: "f2bz", ip: "192.0.2.9", origin: ORIGIN, source: "sshd" }, T), {
    removed: 0,
    lifted: [],
  });
  t.true(store.addHolder(hold("192.0.2.9", ORIGIN, 3, T + 60_000, "x")));
  t.false(
    store.addHolder(hold("192.0.2.9", OTHER, 1, T + 3_600_000, "sshd")),
    "a second holder applies nothing",
  );
  t.deepEqual(store.applied().length, 1);
  t.deepEqual(
    store.release({ jail: "f2bz", ip: "192.0.2.9", origin: OTHER, source: "x" }, T),
    { removed: 0, lifted: [] },
    "another origin's unban, or an unban from a jail it did not ban in, releases nothing",
  );
  t.deepEqual(store.release({ jail: "f2bz", ip: "192.0.2.9", origin: ORIGIN, source: "x" }, T + 1000), {
    removed: 1,
    lifted: [],
  });
  const unbans = () => store.db.prepare("SELECT count(*) AS n FROM ledger WHERE kind = 'unban'").get();
  t.deepEqual(unbans(), { n: 0 }, "nothing lifted, no unban in the ledger");
  t.true(store.isApplied("f2bz", "192.0.2.9"), "still held by the other origin");
  const last = store.release({ jail: "f2bz", ip: "192.0.2.9", origin: OTHER, source: "sshd" }, T + 2000);
  t.deepEqual(
    last.lifted.map((b) => [b.jail, b.ip]),
    [["f2bz", "192.0.2.9"]],
  );
  t.true(wasAppliedByCluster(store.db, "unban", "f2bz", "192.0.2.9", T + 2000));
  t.deepEqual(store.applied(), []);
});

test("an expiry of one event id releases that hold only, and a holder's own expiry only its own", async (t) => {
  const { store } = await open(t);
  store.addHolder(hold("198.51.100.4", ORIGIN, 7, T + 60_000));
  store.addHolder(hold("198.51.100.4", OTHER, 2, T + 120_000));
  t.deepEqual(store.release({ ip: "198.51.100.4", id: `${ORIGIN}:8` }, T), { removed: 0, lifted: [] });
  t.deepEqual(store.release({ ip: "198.51.100.5", id: `${ORIGIN}:7` }, T), { removed: 0, lifted: [] });
  t.deepEqual(store.expire(T + 60_000), { removed: 1, lifted: [] });
  t.deepEqual(
    store.release({ ip: "198.51.100.4", id: `${OTHER}:2` }, T + 61_000).lifted.map((b) => b.ip),
    ["198.51.100.4"],
  );
});

test("a state file of the first schema keeps its applied bans, released by their origin from any jail", async (t) => {
  const dir = await tempDir(t, "f2bz-substore-");
  const old = new Database(path.join(dir, SUBSCRIBER_STATE_FILE));
  old.exec(`
    CREATE TABLE applied (
      jail TEXT NOT NULL, ip TEXT NOT NULL, id TEXT NOT NULL, origin TEXT NOT NULL,
      expires INTEGER NOT NULL, PRIMARY KEY (jail, ip)
    ) WITHOUT ROWID;
    CREATE INDEX applied_expires ON applied (expires);
    CREATE TABLE seen (id TEXT PRIMARY KEY, time INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX seen_time ON seen (time);
    CREATE TABLE publishers (endpoint TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
    ${LEDGER_SCHEMA}
  `);
  old
    .prepare("INSERT INTO applied VALUES (?, ?, ?, ?, ?)")
    .run("f2bz", "192.0.2.5", `${ORIGIN}:5`, ORIGIN, T + 60_000);
  old.pragma("user_version = 1");
  old.close();
  const store = new SubscriberStore(dir);
  t.teardown(() => store.close());
  t.deepEqual(
    store.applied().map((b) => [b.jail, b.ip, b.id, b.expires]),
    [["f2bz", "192.0.2.5", `${ORIGIN}:5`, T + 60_000]],
  );
  t.false(store.addHolder(hold("192.0.2.5", OTHER, 1, T + 90_000)));
  t.deepEqual(store.release({ jail: "f2bz", ip: "192.0.2.5", origin: ORIGIN, source: "nginx" }, T), {
    removed: 1,
    lifted: [],
  });
  t.is(store.applied().length, 1, "the other holder keeps it");
});

test("seen ids, held bans and publisher sequences survive a restart", async (t) => {
  const { store, dir } = await open(t);
  t.true(store.markSeen(`${ORIGIN}:4`, T + 3_600_000));
  t.false(store.markSeen(`${ORIGIN}:4`, T + 3_600_000));
  store.addHolder(hold("2001:db8::4", ORIGIN, 4, T + 3_600_000, "sshd", "sshd"));
  store.setPublisherSeq({ name: PUB, feed: "tcp://192.0.2.100:5680" }, 42);
  store.close();
  const again = new SubscriberStore(dir);
  t.teardown(() => again.close());
  t.true(again.hasSeen(`${ORIGIN}:4`));
  again.pruneSeen(T + 3_600_000);
  t.true(again.hasSeen(`${ORIGIN}:4`), "kept until its ban expires");
  again.pruneSeen(T + 3_600_001);
  t.false(again.hasSeen(`${ORIGIN}:4`));
  t.deepEqual(
    again.applied().map((b) => [b.jail, b.ip]),
    [["sshd", "2001:db8::4"]],
  );
  t.is(again.publisherSeq(PUB), 42);
  t.is(again.publisherSeq("cd".repeat(32)), undefined);
});

test("without a ledger (dry run, log action) applied bans are held but never claimed as echoes", async (t) => {
  const dir = await tempDir(t, "f2bz-substore-");
  const store = new SubscriberStore(dir, { ledger: false });
  t.teardown(() => store.close());
  store.addHolder(hold("192.0.2.7", ORIGIN, 9, T + 60_000));
  t.true(store.isApplied("f2bz", "192.0.2.7"));
  t.false(wasAppliedByCluster(store.db, "ban", "f2bz", "192.0.2.7", T));
  t.is(
    store.release({ jail: "f2bz", ip: "192.0.2.7", origin: ORIGIN, source: "sshd" }, T + 1000).lifted.length,
    1,
  );
  t.false(wasAppliedByCluster(store.db, "unban", "f2bz", "192.0.2.7", T + 1000));
});

test("a publisher's sequence follows its key: a renamed endpoint keeps it, a state file that named it by endpoint too", async (t) => {
  const { store, dir } = await open(t);
  store.setPublisherSeq({ name: PUB, feed: "tcp://192.0.2.100:5680" }, 42);
  store.adoptPublishers([{ name: PUB, feed: "tcp://pub1.example.net:5680" }]);
  t.is(store.publisherSeq(PUB), 42, "same key, another host name");
  // As schema 2 wrote it: the endpoint alone.
  store.db.prepare("UPDATE publishers SET name = NULL").run();
  store.close();
  const again = new SubscriberStore(dir);
  t.teardown(() => again.close());
  const other = "cd".repeat(32);
  again.adoptPublishers([
    { name: PUB, feed: "tcp://pub1.example.net:5680" },
    { name: other, feed: "tcp://192.0.2.200:5680" },
  ]);
  t.is(again.publisherSeq(PUB), 42, "adopted by the key configured at its endpoint");
  t.is(again.publisherSeq(other), undefined);
  // Two publishers swap endpoints in one config edit: each keeps its own sequence.
  again.setPublisherSeq({ name: other, feed: "tcp://192.0.2.200:5680" }, 7);
  again.adoptPublishers([
    { name: PUB, feed: "tcp://192.0.2.200:5680" },
    { name: other, feed: "tcp://pub1.example.net:5680" },
  ]);
  t.is(again.publisherSeq(PUB), 42);
  t.is(again.publisherSeq(other), 7);
  t.deepEqual(again.db.prepare("SELECT endpoint, seq FROM publishers ORDER BY seq").all(), [
    { endpoint: "tcp://pub1.example.net:5680", seq: 7 },
    { endpoint: "tcp://192.0.2.200:5680", seq: 42 },
  ]);
});
