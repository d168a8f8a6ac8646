import path from "node:path";
import type { ExecutionContext } from "ava";
import test from "ava";
import Database from "better-sqlite3";
import { generateIdentity, type SecretIdentity } from "../../src/keys/identity.js";
import { PublisherStore } from "../../src/publisher/store.js";
import { PUBLISHER_STATE_FILE } from "../../src/state/files.js";
import { heldIn } from "../helpers/state.js";
import { tempDir } from "../helpers/temp-dir.js";
import { entryKeys, sign } from "./helpers.js";

/**
 * The publisher's durable state on a real SQLite file: what is broadcast, what is only
 * acknowledged, what a snapshot holds, and that a restart (a new store on the same directory)
 * keeps all of it.
 */
const NOW = 1_800_000_000_000;

async function openStore(t: ExecutionContext, dir?: string) {
  const stateDir = dir ?? (await tempDir(t, "f2bz-pubstore-"));
  const store = new PublisherStore(stateDir);
  t.teardown(() => store.close());
  return { store, stateDir };
}

async function event(
  id: SecretIdentity,
  seq: number,
  ip: string,
  more: { kind?: "ban" | "unban"; jail?: string; expires?: number; time?: number } = {},
) {
  const time = more.time ?? NOW;
  const signed = await sign(id, {
    seq,
    ip,
    time,
    ...(more.kind ? { kind: more.kind } : {}),
    ...(more.jail ? { jail: more.jail } : {}),
    ...(more.expires ? { expires: more.expires } : {}),
  });
  return {
    stored: { ...signed.event },
    payload: signed.payload,
    signature: signed.signature,
  };
}

function accept(store: PublisherStore, e: Awaited<ReturnType<typeof event>>, now = NOW) {
  return store.accept(e.stored, e.payload, e.signature, now);
}

test("a new ban is stored and broadcast with the next publisher sequence number", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  t.is(store.publisherSeq, 0);
  const first = await event(web1, 1, "203.0.113.7");
  t.deepEqual(accept(store, first), { type: "broadcast", publisherSeq: 1 });
  t.deepEqual(accept(store, await event(web1, 2, "2001:db8::7")), { type: "broadcast", publisherSeq: 2 });
  t.is(store.publisherSeq, 2);
  t.is(store.activeCount(), 2);
  t.true(store.hasSeen(first.stored.id));
  t.is(store.highWaterMark(web1.nodeId), 2);

  const snapshot = store.snapshot(NOW);
  t.is(snapshot.publisherSeq, 2);
  t.deepEqual(entryKeys(snapshot.entries), ["sshd 2001:db8::7", "sshd 203.0.113.7"]);
  const stored = snapshot.entries.find((e) => e.payload.includes("203.0.113.7"))!;
  t.true(Buffer.from(stored.payload).equals(first.payload), "payload kept byte for byte");
  t.true(Buffer.from(stored.signature).equals(first.signature), "signature kept byte for byte");
});

test("the same event again is a duplicate: nothing changes, no sequence number is used", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  const ban = await event(web1, 1, "203.0.113.7");
  accept(store, ban);
  t.deepEqual(accept(store, ban), { type: "duplicate" });
  t.is(store.publisherSeq, 1);
  t.is(store.activeCount(), 1);
});

test("a ban of an active address by another origin is a holder of its own, broadcast once", async (t) => {
  const { store, stateDir } = await openStore(t);
  const [web1, web2] = await Promise.all([generateIdentity("web1"), generateIdentity("web2")]);
  const first = await event(web1, 1, "203.0.113.7", { expires: NOW + 60_000 });
  accept(store, first);
  const later = await event(web2, 1, "203.0.113.7", { expires: NOW + 600_000, time: NOW + 1000 });
  t.deepEqual(accept(store, later, NOW + 1000), { type: "broadcast", publisherSeq: 2 });
  t.deepEqual(accept(store, later, NOW + 1000), { type: "duplicate" });
  t.is(store.activeCount(), 1, "one banned address");
  t.is(heldIn("publisher", stateDir).length, 2);
  t.is(store.highWaterMark(web2.nodeId), 1);
  // The snapshot carries both holders, each its own signed bytes.
  const entries = store.snapshot(NOW + 1000).entries.map((e) => Buffer.from(e.payload).toString("hex"));
  t.deepEqual(entries.sort(), [first.payload.toString("hex"), later.payload.toString("hex")].sort());
  // The first holder's expiry drops only its hold: the address stays banned by the second.
  t.deepEqual(
    store.pruneExpired(NOW + 60_000).map((e) => [e.id, e.publisherSeq]),
    [[first.stored.id, 3]],
  );
  t.is(store.activeCount(), 1);
  const [entry] = store.snapshot(NOW + 60_000).entries;
  t.true(Buffer.from(entry!.payload).equals(later.payload));
});

test("a second ban by the same origin while its hold is live is absorbed, without extending it", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  const first = await event(web1, 1, "203.0.113.7", { expires: NOW + 60_000 });
  accept(store, first);
  const again = await event(web1, 2, "203.0.113.7", { expires: NOW + 600_000, time: NOW + 1000 });
  t.deepEqual(accept(store, again, NOW + 1000), { type: "already-active" });
  t.true(store.hasSeen(again.stored.id), "the absorbed event is seen: a resend is a duplicate");
  t.is(store.publisherSeq, 1);
  t.deepEqual(
    store.pruneExpired(NOW + 60_000).map((e) => e.id),
    [first.stored.id],
  );
  const later = await event(web1, 3, "203.0.113.7", { time: NOW + 61_000, expires: NOW + 700_000 });
  t.deepEqual(accept(store, later, NOW + 61_000), { type: "broadcast", publisherSeq: 3 });
});

test("the same address in another jail is a ban of its own", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  accept(store, await event(web1, 1, "203.0.113.7"));
  t.deepEqual(accept(store, await event(web1, 2, "203.0.113.7", { jail: "nginx-http-auth" })), {
    type: "broadcast",
    publisherSeq: 2,
  });
  t.is(store.activeCount(), 2);
});

test("an unban lifts the active ban and is broadcast; an unban of nothing changes nothing", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  accept(store, await event(web1, 1, "203.0.113.7"));
  t.deepEqual(accept(store, await event(web1, 2, "203.0.113.7", { kind: "unban" })), {
    type: "broadcast",
    publisherSeq: 2,
  });
  t.is(store.activeCount(), 0);
  t.deepEqual(accept(store, await event(web1, 3, "198.51.100.9", { kind: "unban" })), { type: "no-change" });
  t.is(store.publisherSeq, 2);
  // A new ban after the unban is news again.
  t.deepEqual(accept(store, await event(web1, 4, "203.0.113.7")), { type: "broadcast", publisherSeq: 3 });
});

test("an unban lifts only its origin's hold; the address is free once the last holder goes", async (t) => {
  const { store, stateDir } = await openStore(t);
  const [web1, web2, web3] = await Promise.all(["web1", "web2", "web3"].map((n) => generateIdentity(n)));
  accept(store, await event(web1!, 1, "203.0.113.7"));
  t.deepEqual(accept(store, await event(web2!, 1, "203.0.113.7")), { type: "broadcast", publisherSeq: 2 });
  t.deepEqual(accept(store, await event(web3!, 1, "203.0.113.7", { kind: "unban" })), { type: "not-origin" });
  t.is(heldIn("publisher", stateDir).length, 2, "a node holding nothing lifts nothing");
  t.deepEqual(accept(store, await event(web1!, 2, "203.0.113.7", { kind: "unban" })), {
    type: "broadcast",
    publisherSeq: 3,
  });
  t.is(store.activeCount(), 1, "web1's unban leaves web2's ban");
  t.is(heldIn("publisher", stateDir).length, 1);
  t.deepEqual(accept(store, await event(web1!, 3, "203.0.113.7", { kind: "unban" })), { type: "not-origin" });
  t.deepEqual(accept(store, await event(web2!, 2, "203.0.113.7", { kind: "unban" })), {
    type: "broadcast",
    publisherSeq: 4,
  });
  t.is(store.activeCount(), 0);
});

test("an origin at its cap of active bans is refused a new one, not an unban or a hold it has", async (t) => {
  const { store } = await openStore(t);
  const [web1, web2] = await Promise.all([generateIdentity("web1"), generateIdentity("web2")]);
  const limits = { maxActivePerOrigin: 2 };
  const take = (e: Awaited<ReturnType<typeof event>>) =>
    store.accept(e.stored, e.payload, e.signature, NOW, limits);
  t.is(take(await event(web1, 1, "203.0.113.1")).type, "broadcast");
  t.is(take(await event(web1, 2, "203.0.113.2")).type, "broadcast");
  const third = await event(web1, 3, "203.0.113.3");
  t.deepEqual(take(third), { type: "over-limit", active: 2 });
  t.false(store.hasSeen(third.stored.id), "refused, not seen: it may come back once below the cap");
  t.is(store.highWaterMark(web1.nodeId), 2);
  t.is(take(await event(web1, 4, "203.0.113.1")).type, "already-active", "a hold it has");
  t.is(take(await event(web2, 1, "203.0.113.3")).type, "broadcast", "another origin is not capped");
  t.is(take(await event(web1, 5, "203.0.113.1", { kind: "unban" })).type, "broadcast");
  t.deepEqual(take(third), { type: "broadcast", publisherSeq: 5 });
  t.is(store.activeOf(web1.nodeId), 2);
});

test("purging an origin drops each of its holds with an expiry to announce, and nobody else's", async (t) => {
  const { store } = await openStore(t);
  const [web1, web2] = await Promise.all([generateIdentity("web1"), generateIdentity("web2")]);
  const own = await event(web1, 1, "203.0.113.1");
  const shared = await event(web1, 2, "203.0.113.2");
  for (const e of [own, shared, await event(web2, 1, "203.0.113.2")]) accept(store, e);
  t.deepEqual(store.purgeOrigin(web1.nodeId), [
    { jail: "sshd", ip: "203.0.113.1", id: own.stored.id, publisherSeq: 4 },
    { jail: "sshd", ip: "203.0.113.2", id: shared.stored.id, publisherSeq: 5 },
  ]);
  t.deepEqual(store.purgeOrigin(web1.nodeId), []);
  t.deepEqual(entryKeys(store.snapshot(NOW).entries), ["sshd 203.0.113.2"]);
  t.is(store.activeOf(web2.nodeId), 1);
});

test("a ban whose expiry has already passed is acknowledged, not stored or broadcast", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  const late = await event(web1, 1, "203.0.113.7", { expires: NOW + 1000 });
  t.deepEqual(accept(store, late, NOW + 5000), { type: "no-change" });
  t.is(store.activeCount(), 0);
  t.true(store.hasSeen(late.stored.id));
});

test("expired bans are pruned, each with its own sequence number, and leave the snapshot", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  const short = await event(web1, 1, "203.0.113.7", { expires: NOW + 1000 });
  const shorter = await event(web1, 2, "198.51.100.7", { expires: NOW + 500 });
  const long = await event(web1, 3, "2001:db8::1", { expires: NOW + 60_000 });
  for (const e of [short, shorter, long]) accept(store, e);
  t.deepEqual(store.pruneExpired(NOW + 499), []);
  // Past its expiry but not pruned yet: no longer served.
  t.deepEqual(entryKeys(store.snapshot(NOW + 700).entries), ["sshd 2001:db8::1", "sshd 203.0.113.7"]);
  const pruned = store.pruneExpired(NOW + 1000);
  t.deepEqual(pruned, [
    { jail: "sshd", ip: "198.51.100.7", id: shorter.stored.id, publisherSeq: 4 },
    { jail: "sshd", ip: "203.0.113.7", id: short.stored.id, publisherSeq: 5 },
  ]);
  t.deepEqual(store.pruneExpired(NOW + 1000), []);
  t.is(store.activeCount(), 1);
  const snapshot = store.snapshot(NOW + 1000);
  t.is(snapshot.publisherSeq, 5);
  t.deepEqual(entryKeys(snapshot.entries), ["sshd 2001:db8::1"]);
});

test("an expired hold not pruned yet is replaced by a new ban of its origin", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  accept(store, await event(web1, 1, "203.0.113.7", { expires: NOW + 1000 }));
  const fresh = await event(web1, 2, "203.0.113.7", { time: NOW + 2000, expires: NOW + 60_000 });
  t.deepEqual(accept(store, fresh, NOW + 2000), { type: "broadcast", publisherSeq: 2 });
  t.deepEqual(store.pruneExpired(NOW + 2000), []);
  const [entry] = store.snapshot(NOW + 2000).entries;
  t.true(Buffer.from(entry!.payload).equals(fresh.payload));
});

test("seen ids are forgotten only once older than the given time", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  const old = await event(web1, 1, "203.0.113.7", { time: NOW - 10_000 });
  const recent = await event(web1, 2, "203.0.113.8");
  accept(store, old);
  accept(store, recent);
  store.pruneSeen(NOW - 5000);
  t.false(store.hasSeen(old.stored.id));
  t.true(store.hasSeen(recent.stored.id));
});

test("a restart keeps active bans, seen ids, high-water marks and the sequence number", async (t) => {
  const { store, stateDir } = await openStore(t);
  const web1 = await generateIdentity("web1");
  const ban = await event(web1, 7, "203.0.113.7");
  accept(store, ban);
  accept(store, await event(web1, 8, "2001:db8::7"));
  accept(store, await event(web1, 9, "2001:db8::7", { kind: "unban" }));
  const before = store.snapshot(NOW);
  store.close();
  store.close();

  const { store: reopened } = await openStore(t, stateDir);
  t.is(reopened.publisherSeq, 3);
  t.is(reopened.activeCount(), 1);
  t.true(reopened.hasSeen(ban.stored.id));
  t.is(reopened.highWaterMark(web1.nodeId), 9);
  t.deepEqual(accept(reopened, ban), { type: "duplicate" });
  const after = reopened.snapshot(NOW);
  t.is(after.publisherSeq, before.publisherSeq);
  t.deepEqual(
    after.entries.map((e) => [Buffer.from(e.payload), Buffer.from(e.signature)]),
    before.entries.map((e) => [Buffer.from(e.payload), Buffer.from(e.signature)]),
  );
  t.deepEqual(accept(reopened, await event(web1, 10, "198.51.100.1")), {
    type: "broadcast",
    publisherSeq: 4,
  });
});

test("a state file of the first schema keeps its active bans, each as its holder", async (t) => {
  const stateDir = await tempDir(t, "f2bz-pubstore-");
  const web1 = await generateIdentity("web1");
  const ban = await event(web1, 1, "203.0.113.7");
  const old = new Database(path.join(stateDir, PUBLISHER_STATE_FILE));
  old.exec(V1_SCHEMA);
  old
    .prepare(
      "INSERT INTO active (jail, ip, id, origin, expires, payload, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .run("sshd", "203.0.113.7", ban.stored.id, web1.nodeId, ban.stored.expires, ban.payload, ban.signature);
  old.prepare("UPDATE meta SET value = 7 WHERE key = 'publisher_seq'").run();
  old.pragma("user_version = 1");
  old.close();

  const { store } = await openStore(t, stateDir);
  t.is(store.publisherSeq, 7);
  const [entry] = store.snapshot(NOW).entries;
  t.true(Buffer.from(entry!.payload).equals(ban.payload));
  t.deepEqual(accept(store, await event(web1, 2, "203.0.113.7", { kind: "unban" })), {
    type: "broadcast",
    publisherSeq: 8,
  });
  t.is(store.activeCount(), 0);
});

/** The publisher's schema as f2bz 0.x created it (one row per jail and ip). */
const V1_SCHEMA = `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  INSERT INTO meta (key, value) VALUES ('publisher_seq', 0);
  CREATE TABLE active (
    jail TEXT NOT NULL, ip TEXT NOT NULL, id TEXT NOT NULL, origin TEXT NOT NULL,
    expires INTEGER NOT NULL, payload BLOB NOT NULL, signature BLOB NOT NULL,
    PRIMARY KEY (jail, ip)
  ) WITHOUT ROWID;
  CREATE INDEX active_expires ON active (expires);
  CREATE TABLE seen (id TEXT PRIMARY KEY, time INTEGER NOT NULL) WITHOUT ROWID;
  CREATE INDEX seen_time ON seen (time);
  CREATE TABLE origins (origin TEXT PRIMARY KEY, high INTEGER NOT NULL) WITHOUT ROWID;
`;
