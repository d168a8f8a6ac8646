import type { ExecutionContext } from "ava";
import test from "ava";
import { generateIdentity, type SecretIdentity } from "../../src/keys/identity.js";
import { PublisherStore } from "../../src/publisher/store.js";
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

test("a ban already active from another origin is absorbed, without extending the active one", async (t) => {
  const { store } = await openStore(t);
  const [web1, web2] = await Promise.all([generateIdentity("web1"), generateIdentity("web2")]);
  const first = await event(web1, 1, "203.0.113.7", { expires: NOW + 60_000 });
  accept(store, first);
  const later = await event(web2, 1, "203.0.113.7", { expires: NOW + 600_000, time: NOW + 1000 });
  t.deepEqual(accept(store, later, NOW + 1000), { type: "already-active" });
  t.is(store.publisherSeq, 1);
  t.true(store.hasSeen(later.stored.id), "the absorbed event is seen: a resend is a duplicate");
  t.is(store.highWaterMark(web2.nodeId), 1);
  // Subscribers hold the ban until the first event's expiry, which the snapshot still carries:
  // the publisher lets it expire then too, so that a new ban of the address is broadcast again.
  const [entry] = store.snapshot(NOW + 1000).entries;
  t.true(Buffer.from(entry!.payload).equals(first.payload));
  t.deepEqual(
    store.pruneExpired(NOW + 60_000).map((e) => e.id),
    [first.stored.id],
  );
  const again = await event(web2, 2, "203.0.113.7", { time: NOW + 61_000, expires: NOW + 700_000 });
  t.deepEqual(accept(store, again, NOW + 61_000), { type: "broadcast", publisherSeq: 3 });
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

test("only the node whose ban is active may lift it early", async (t) => {
  const { store } = await openStore(t);
  const web1 = await generateIdentity("web1");
  const web2 = await generateIdentity("web2");
  accept(store, await event(web1, 1, "203.0.113.7"));
  t.deepEqual(accept(store, await event(web2, 1, "203.0.113.7")), { type: "already-active" });
  t.deepEqual(accept(store, await event(web2, 2, "203.0.113.7", { kind: "unban" })), { type: "not-origin" });
  t.is(store.activeCount(), 1, "web2's unban does not lift web1's ban");
  t.is(store.publisherSeq, 1);
  t.deepEqual(accept(store, await event(web1, 2, "203.0.113.7", { kind: "unban" })), {
    type: "broadcast",
    publisherSeq: 2,
  });
  t.is(store.activeCount(), 0);
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

test("an expired ban not pruned yet is replaced by a new ban of the address", async (t) => {
  const { store } = await openStore(t);
  const [web1, web2] = await Promise.all([generateIdentity("web1"), generateIdentity("web2")]);
  accept(store, await event(web1, 1, "203.0.113.7", { expires: NOW + 1000 }));
  const fresh = await event(web2, 1, "203.0.113.7", { time: NOW + 2000, expires: NOW + 60_000 });
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
