import { rename } from "node:fs/promises";
import path from "node:path";
import type { ExecutionContext } from "ava";
import test from "ava";
import { revokedDir, roleDir } from "../../src/keys/store.js";
import type { FeedMessage } from "../../src/protocol/feed.js";
import { verifyEvent } from "../../src/protocol/signature.js";
import { MAX_CHUNK_ENTRIES } from "../../src/protocol/snapshot.js";
import { PublisherStore } from "../../src/publisher/store.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import { waitFor } from "../harness/wait.js";
import { type TestCluster, type TestNode, testCluster } from "../helpers/cluster.js";
import { EventLog } from "../transport/helpers.js";
import {
  authorized,
  DEADLINE_MS,
  entryKeys,
  FAST_RECONNECT,
  feedClient,
  fetchSnapshot,
  keyOf,
  sign,
  startTestPublisher,
  submitter,
  type TestPublisher,
} from "./helpers.js";

/**
 * The publisher daemon on real CURVE sockets on loopback: fan-out, limits, authorization, state
 * across a restart, snapshots against a live stream, expiry, revocation on all three endpoints.
 */
const FAST_LIMITS = { perOriginRate: 10_000, perOriginBurst: 10_000, globalRate: 10_000 };

type Update = Extract<FeedMessage, { type: "update" }>;
const updates = (messages: readonly FeedMessage[]) =>
  messages.filter((m): m is Update => m.type === "update");

test("an accepted event reaches every subscriber byte for byte, and heartbeats carry the sequence", async (t) => {
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const [sub1, sub2] = await authorized(cluster, "subscriber", "sub1", "sub2");
  const publisher = await startTestPublisher(t, cluster);
  const feeds = [feedClient(t, sub1!, publisher), feedClient(t, sub2!, publisher)];
  for (const feed of feeds) t.like(await feed.ready, { type: "heartbeat", seq: 0 });

  const event = await sign(web1!.identity, { seq: 1, ip: "203.0.113.7" });
  const monitor = submitter(t, web1!, publisher);
  t.deepEqual(await monitor.submit(event), { type: "ack", id: event.event.id });
  for (const feed of feeds) {
    const update = (await feed.messages.waitFor(
      (m) => m.type === "update",
      "the update",
      DEADLINE_MS,
    )) as Update;
    t.true(update.payload.equals(event.payload));
    t.true(update.signature.equals(event.signature));
    t.is(update.seq, 1);
    await feed.messages.waitFor(
      (m) => m.type === "heartbeat" && m.seq === 1,
      "a heartbeat with seq 1",
      DEADLINE_MS,
    );
  }
  t.is(publisher.running.store.activeCount(), 1);
});

test("a flood from one authorized origin is limited without starving another origin", async (t) => {
  const cluster = await testCluster(t);
  const [flooder, quiet] = await authorized(cluster, "monitor", "flooder", "quiet");
  const [sub] = await authorized(cluster, "subscriber", "sub");
  const publisher = await startTestPublisher(t, cluster, {
    publisher: { perOriginRate: 5, perOriginBurst: 20, globalRate: 1000 },
  });
  const feed = feedClient(t, sub!, publisher);
  await feed.ready;

  const flood = submitter(t, flooder!, publisher);
  const polite = submitter(t, quiet!, publisher);
  let done = false;
  t.teardown(() => {
    done = true;
  });
  const outcomes = { ack: 0, limited: 0 };
  const started = Date.now();
  const flooding = (async () => {
    for (let seq = 1; !done && seq < 100_000; seq++) {
      const reply = await flood.submit(
        await sign(flooder!.identity, { seq, ip: `203.0.113.${1 + (seq % 250)}`, jail: `f${seq}` }),
      );
      if (reply.type === "ack") outcomes.ack++;
      else if (reply.reason === "rate-limited") outcomes.limited++;
      else throw new Error(`flood event refused: ${reply.reason}`);
    }
  })();
  // The quiet origin starts once the flood is being refused, and sends while it goes on.
  await waitFor(() => (outcomes.limited > 0 ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "the flood to be limited",
  });
  const quietIds: string[] = [];
  for (let seq = 1; seq <= 10; seq++) {
    const event = await sign(quiet!.identity, { seq, ip: `198.51.100.${100 + seq}` });
    t.deepEqual(await polite.submit(event), { type: "ack", id: event.event.id });
    quietIds.push(event.event.id);
  }
  done = true;
  await flooding;
  const elapsedS = (Date.now() - started) / 1000;
  t.log(`flood: ${outcomes.ack} accepted, ${outcomes.limited} limited in ${elapsedS.toFixed(1)} s`);
  t.true(outcomes.limited > 0);
  // Burst plus the refill over the whole run: an upper bound, whatever the speed of this machine.
  t.true(outcomes.ack <= 20 + Math.ceil(5 * elapsedS) + 1, `${outcomes.ack} flood events accepted`);
  const seen = () => {
    const ids = new Set(
      updates(feed.messages.items).map((u) => (JSON.parse(u.payload.toString()) as { id: string }).id),
    );
    return quietIds.every((id) => ids.has(id)) ? true : undefined;
  };
  await waitFor(seen, { timeoutMs: DEADLINE_MS, what: "every event of the quiet origin on the feed" });
  t.is(
    publisher.running.metrics.get("submissions_rate_limited_total", { limit: "origin" }),
    outcomes.limited,
  );
  t.is(publisher.running.metrics.get("submissions_rate_limited_total", { limit: "global" }), 0);
});

test("an unauthorized origin's validly signed event is refused, and its key cannot even connect", async (t) => {
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const [reader] = await authorized(cluster, "subscriber", "reader");
  const outsider = await cluster.node("outsider");
  const publisher = await startTestPublisher(t, cluster);

  // Relayed through an authorized monitor's connection: the signed origin decides.
  const relay = submitter(t, web1!, publisher);
  const foreign = await sign(outsider.identity, { seq: 1, ip: "203.0.113.7" });
  t.deepEqual(await relay.submit(foreign), { type: "nack", id: foreign.event.id, reason: "unauthorized" });
  const fromReader = await sign(reader!.identity, { seq: 1, ip: "203.0.113.8" });
  t.deepEqual(await relay.submit(fromReader), {
    type: "nack",
    id: fromReader.event.id,
    reason: "unauthorized",
  });

  // Directly: ZAP refuses the unknown key, and a subscriber key in the submit domain.
  for (const node of [outsider, reader!]) {
    const direct = submitter(t, node, publisher);
    void direct.submit(foreign).catch(() => {});
    await direct.events.authFailure(400, DEADLINE_MS);
  }
  t.is(publisher.running.store.activeCount(), 0);
  t.is(publisher.running.store.publisherSeq, 0);
});

test("a restart keeps active bans, seen ids and the sequence number", async (t) => {
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const [sub] = await authorized(cluster, "subscriber", "sub");
  const publisher = await startTestPublisher(t, cluster);
  const monitor = submitter(t, web1!, publisher);
  const events = [
    await sign(web1!.identity, { seq: 1, ip: "203.0.113.7" }),
    await sign(web1!.identity, { seq: 2, ip: "2001:db8::7" }),
    await sign(web1!.identity, { seq: 3, ip: "198.51.100.7", jail: "nginx-http-auth" }),
    await sign(web1!.identity, { seq: 4, ip: "2001:db8::7", kind: "unban" }),
  ];
  for (const event of events) t.like(await monitor.submit(event), { type: "ack" });
  const before = await fetchSnapshot(t, sub!, publisher);
  t.is(before.seq, 4);
  monitor.socket.close();

  await publisher.running.close();
  const restarted = await publisher.restart();
  t.is(restarted.store.activeCount(), 2);
  const after = await fetchSnapshot(t, sub!, publisher);
  t.is(after.seq, 4);
  t.deepEqual(entryKeys(after.entries), ["nginx-http-auth 198.51.100.7", "sshd 203.0.113.7"]);
  t.deepEqual(
    after.entries.map((e) => e.payload.toString("base64")),
    before.entries.map((e) => e.payload.toString("base64")),
  );
  // A monitor resending after the restart (its ack was lost) is acknowledged, not re-broadcast.
  const again = submitter(t, web1!, publisher);
  t.deepEqual(await again.submit(events[0]!), { type: "ack", id: events[0]!.event.id });
  t.is(restarted.metrics.get("submissions_accepted_total", { outcome: "duplicate" }), 1);
  t.is(restarted.store.publisherSeq, 4);
  const next = await sign(web1!.identity, { seq: 5, ip: "203.0.113.99" });
  t.like(await again.submit(next), { type: "ack" });
  t.is(restarted.store.publisherSeq, 5, "numbering goes on where it stopped");
});

test("a snapshot taken during a stream of updates, plus the updates after it, equals the publisher's state", async (t) => {
  const cluster = await testCluster(t);
  const monitors = await authorized(cluster, "monitor", "web1", "web2");
  const [sub] = await authorized(cluster, "subscriber", "sub");
  const publisher = await startTestPublisher(t, cluster, { publisher: FAST_LIMITS });
  const feed = feedClient(t, sub!, publisher);
  await feed.ready;

  // Two origins ban and unban addresses of a small pool, so that bans collide (already active),
  // unbans lift bans of the other origin, and the active set churns.
  const pool = [
    ...Array.from({ length: 20 }, (_, i) => `203.0.113.${i + 1}`),
    ...Array.from({ length: 10 }, (_, i) => `2001:db8::${i + 1}`),
  ];
  // The stream runs until well after the snapshot: updates before it, during it and after it.
  let stop = false;
  const streams = monitors.map(async (node, index) => {
    const client = submitter(t, node, publisher);
    for (let seq = 1; !stop; seq++) {
      const ip = pool[(seq * (index + 3)) % pool.length]!;
      const kind = seq % 3 === 0 ? "unban" : "ban";
      const reply = await client.submit(
        await sign(node.identity, { seq, ip, kind, jail: seq % 2 ? "sshd" : "postfix" }),
      );
      if (reply.type !== "ack") throw new Error(`stream event refused: ${reply.reason}`);
    }
  });
  await feed.messages.waitFor(
    (m) => m.type === "update" && m.seq >= 40,
    "40 updates of the stream",
    DEADLINE_MS,
  );
  const snapshot = await fetchSnapshot(t, sub!, publisher);
  await feed.messages.waitFor(
    (m) => m.type === "update" && m.seq >= snapshot.seq + 60,
    "60 updates after the snapshot",
    DEADLINE_MS,
  );
  stop = true;
  await Promise.all(streams);
  const finalSeq = publisher.running.store.publisherSeq;
  await feed.messages.waitFor(
    (m) => m.type === "heartbeat" && m.seq === finalSeq,
    "a heartbeat at the final seq",
    DEADLINE_MS,
  );

  const state = new Map<string, string>();
  for (const entry of snapshot.entries)
    state.set(keyOf(JSON.parse(entry.payload.toString())), entry.payload.toString("base64"));
  const after = updates(feed.messages.items)
    .filter((u) => u.seq > snapshot.seq)
    .sort((a, b) => a.seq - b.seq);
  t.deepEqual(
    after.map((u) => u.seq),
    Array.from({ length: finalSeq - snapshot.seq }, (_, i) => snapshot.seq + 1 + i),
    "every update after the snapshot arrived, none twice",
  );
  for (const update of after) {
    const event = JSON.parse(update.payload.toString()) as { kind: string; jail: string; ip: string };
    if (event.kind === "ban") {
      t.false(state.has(keyOf(event)), `a broadcast ban was not active: ${keyOf(event)}`);
      state.set(keyOf(event), update.payload.toString("base64"));
    } else {
      t.true(state.delete(keyOf(event)), `a broadcast unban lifted an active ban: ${keyOf(event)}`);
    }
  }
  const truth = publisher.running.store.snapshot(Date.now());
  t.is(truth.publisherSeq, finalSeq);
  t.deepEqual(
    [...state.entries()].sort(),
    truth.entries
      .map((e) => [keyOf(JSON.parse(e.payload.toString())), e.payload.toString("base64")] as [string, string])
      .sort(),
  );
  t.true(
    publisher.running.metrics.get("submissions_accepted_total", { outcome: "already-active" }) > 0,
    "the stream had colliding bans",
  );
});

test("a slow subscriber that never reads does not delay the others or the intake", async (t) => {
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const [slow, live] = await authorized(cluster, "subscriber", "slow", "live");
  const publisher = await startTestPublisher(t, cluster, { publisher: FAST_LIMITS });
  // Connected and subscribed, but never read: its queues fill and the publisher drops for it.
  const stalled = createClientSocket("subscriber", {
    identity: slow!.identity,
    serverKey: publisher.node.identity.curvePublic,
    ...FAST_RECONNECT,
  });
  t.teardown(() => stalled.close());
  stalled.receiveHighWaterMark = 1;
  const stalledEvents = new EventLog(stalled);
  stalled.subscribe();
  stalled.connect(publisher.running.endpoints.feed);
  await stalledEvents.handshake(DEADLINE_MS);
  const feed = feedClient(t, live!, publisher);
  await feed.ready;

  const monitor = submitter(t, web1!, publisher);
  const count = 200;
  for (let seq = 1; seq <= count; seq++) {
    const reply = await monitor.submit(
      await sign(web1!.identity, { seq, ip: "203.0.113.7", jail: `j${seq}` }),
    );
    t.is(reply.type, "ack");
  }
  await feed.messages.waitFor((m) => m.type === "update" && m.seq === count, "the last update", DEADLINE_MS);
  t.deepEqual(
    updates(feed.messages.items).map((u) => u.seq),
    Array.from({ length: count }, (_, i) => i + 1),
  );
  t.is(publisher.running.metrics.get("task_failures_total", { task: "feed-send" }), 0);
});

test("a ban that expires is pruned, announced on the feed, and gone from the snapshot", async (t) => {
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const [sub] = await authorized(cluster, "subscriber", "sub");
  const publisher = await startTestPublisher(t, cluster);
  const feed = feedClient(t, sub!, publisher);
  await feed.ready;
  const monitor = submitter(t, web1!, publisher);
  const now = Date.now();
  const short = await sign(web1!.identity, { seq: 1, ip: "203.0.113.7", time: now, expires: now + 1500 });
  const long = await sign(web1!.identity, { seq: 2, ip: "2001:db8::7" });
  t.like(await monitor.submit(short), { type: "ack" });
  t.like(await monitor.submit(long), { type: "ack" });

  const expiry = await feed.messages.waitFor((m) => m.type === "expire", "the expiry", DEADLINE_MS);
  t.deepEqual(expiry, { type: "expire", seq: 3, jail: "sshd", ip: "203.0.113.7", id: short.event.id });
  t.true(Date.now() >= now + 1500, "not before its time");
  const snapshot = await fetchSnapshot(t, sub!, publisher);
  t.is(snapshot.seq, 3);
  t.deepEqual(entryKeys(snapshot.entries), ["sshd 2001:db8::7"]);
  t.is(publisher.running.metrics.get("bans_expired_total"), 1);
});

test("a burst of expiries in one pass reaches the feed whole, in sequence", async (t) => {
  const cluster = await testCluster(t);
  const pub = await cluster.node("pub");
  const [web1] = await authorized(cluster, "monitor", "web1");
  const [sub] = await authorized(cluster, "subscriber", "sub");
  // More than zeromq.js sends synchronously in a row (512), all expiring in the same prune pass.
  const count = 600;
  const now = Date.now();
  // Seeding takes a few seconds on a loaded machine (one fsync per event), then the start.
  const expires = now + 8000;
  const seed = new PublisherStore(pub.stateDir);
  for (let seq = 1; seq <= count; seq++) {
    const e = await sign(web1!.identity, { seq, ip: "203.0.113.7", jail: `j${seq}`, time: now, expires });
    seed.accept({ ...e.event }, e.payload, e.signature, now);
  }
  seed.close();
  t.log(`seeded in ${Date.now() - now} ms`);

  const publisher = await startTestPublisher(t, cluster);
  const feed = feedClient(t, sub!, publisher);
  // Normally subscribed seconds before the bans expire (seq still `count`); on a machine so slow
  // that it is not, the expiries after its first heartbeat are still checked for gaps.
  const { seq: joined } = await feed.ready;
  await waitFor(() => (publisher.running.metrics.get("bans_expired_total") === count ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "every ban to expire",
  });
  t.is(
    publisher.running.metrics.get("task_failures_total", { task: "feed-send" }),
    0,
    "every expiry was handed to the socket",
  );
  t.is(publisher.running.store.activeCount(), 0);
  await feed.messages.waitFor(
    (m) => m.type === "expire" && m.seq === 2 * count,
    "the last expiry",
    DEADLINE_MS,
  );
  const expiries = feed.messages.items.filter((m) => m.type === "expire" && m.seq > joined);
  t.deepEqual(
    expiries.map((m) => m.seq),
    Array.from({ length: 2 * count - joined }, (_, i) => joined + 1 + i),
  );
  if (joined !== count) t.log(`subscribed late, at seq ${joined}: checked the expiries after it`);
});

test("a snapshot of many bans comes in chunks of verifiable entries, with the sequence it matches", async (t) => {
  const cluster = await testCluster(t);
  const pub = await cluster.node("pub");
  const [web1] = await authorized(cluster, "monitor", "web1");
  const [sub] = await authorized(cluster, "subscriber", "sub");
  const count = 450;
  const now = Date.now();
  const seed = new PublisherStore(pub.stateDir);
  const ips = Array.from({ length: count }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);
  for (const [i, ip] of ips.entries()) {
    const e = await sign(web1!.identity, { seq: i + 1, ip, time: now });
    seed.accept({ ...e.event }, e.payload, e.signature, now);
  }
  seed.close();

  const publisher = await startTestPublisher(t, cluster);
  const snapshot = await fetchSnapshot(t, sub!, publisher);
  t.is(snapshot.seq, count);
  t.is(snapshot.chunks, Math.ceil(count / MAX_CHUNK_ENTRIES));
  t.deepEqual(entryKeys(snapshot.entries), ips.map((ip) => `sshd ${ip}`).sort());
  for (const entry of snapshot.entries) {
    const verified = await verifyEvent(entry.payload, entry.signature);
    if (!verified.ok) t.fail(`snapshot entry refused: ${verified.reason}`);
  }
});

/** Whether `node` completes a CURVE handshake on `endpoint` now (a fresh socket per try). */
async function admitted(node: TestNode, publisher: TestPublisher, endpoint: string): Promise<boolean> {
  const socket = createClientSocket("dealer", {
    identity: node.identity,
    serverKey: publisher.node.identity.curvePublic,
  });
  const events = new EventLog(socket);
  socket.connect(endpoint);
  try {
    const event = await events.waitFor(
      (e) => e.type === "handshake" || e.type === "handshake:error:auth",
      "a handshake outcome",
      DEADLINE_MS,
    );
    return event.type === "handshake";
  } finally {
    socket.close();
  }
}

async function revoke(cluster: TestCluster, role: "monitor" | "subscriber", node: TestNode) {
  await rename(
    path.join(roleDir(cluster.keysDir, role), `${node.name}.key`),
    path.join(revokedDir(cluster.keysDir), `${node.name}.key`),
  );
}

async function persistentDealer(t: ExecutionContext, node: TestNode, publisher: TestPublisher) {
  const dealer = createClientSocket("dealer", {
    identity: node.identity,
    serverKey: publisher.node.identity.curvePublic,
    ...FAST_RECONNECT,
  });
  t.teardown(() => dealer.close());
  const events = new EventLog(dealer);
  dealer.connect(publisher.running.endpoints.snapshot);
  await events.handshake(DEADLINE_MS);
  return { dealer, events };
}

test("revoking a subscriber cuts its live feed and snapshot connections; others carry on", async (t) => {
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const [gone, stays] = await authorized(cluster, "subscriber", "gone", "stays");
  const publisher = await startTestPublisher(t, cluster);
  const goneFeed = feedClient(t, gone!, publisher);
  const staysFeed = feedClient(t, stays!, publisher);
  await Promise.all([goneFeed.ready, staysFeed.ready]);
  const goneSnapshot = await persistentDealer(t, gone!, publisher);

  await revoke(cluster, "subscriber", gone!);
  for (const events of [goneFeed.events, goneSnapshot.events]) {
    await events.waitFor((e) => e.type === "disconnect", "the revoked subscriber's disconnect", DEADLINE_MS);
    await events.authFailure(400, DEADLINE_MS);
  }
  const cut = goneFeed.messages.items.length;

  // The other subscriber reconnects by itself and receives what follows.
  const monitor = submitter(t, web1!, publisher);
  const event = await sign(web1!.identity, { seq: 1, ip: "203.0.113.7" });
  t.like(await monitor.submit(event), { type: "ack" });
  await staysFeed.messages.waitFor(
    (m) => m.type === "update",
    "the update after the revocation",
    DEADLINE_MS,
  );
  t.true(await admitted(stays!, publisher, publisher.running.endpoints.snapshot));
  t.false(await admitted(gone!, publisher, publisher.running.endpoints.snapshot));
  t.is(goneFeed.messages.items.length, cut, "nothing reached the revoked subscriber after the cut");
});

test("revoking a monitor cuts its submit connection and refuses its events; a new key works without restart", async (t) => {
  const cluster = await testCluster(t);
  const [web1, web2] = await authorized(cluster, "monitor", "web1", "web2");
  const publisher = await startTestPublisher(t, cluster);
  const first = submitter(t, web1!, publisher);
  t.like(await first.submit(await sign(web1!.identity, { seq: 1, ip: "203.0.113.7" })), { type: "ack" });

  await revoke(cluster, "monitor", web1!);
  await first.events.waitFor((e) => e.type === "disconnect", "the revoked monitor's disconnect", DEADLINE_MS);
  await first.events.authFailure(400, DEADLINE_MS);
  const relay = submitter(t, web2!, publisher);
  const late = await sign(web1!.identity, { seq: 2, ip: "203.0.113.8" });
  t.deepEqual(await relay.submit(late), { type: "nack", id: late.event.id, reason: "unauthorized" });

  const web3 = await cluster.node("web3");
  await cluster.authorize(web3, "monitor");
  await waitFor(
    async () => ((await admitted(web3, publisher, publisher.running.endpoints.submit)) ? true : undefined),
    {
      timeoutMs: DEADLINE_MS,
      what: "the new monitor key to be loaded",
    },
  );
  const third = submitter(t, web3, publisher);
  t.like(await third.submit(await sign(web3.identity, { seq: 1, ip: "198.51.100.77" })), { type: "ack" });
});
