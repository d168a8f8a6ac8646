import { appendFile } from "node:fs/promises";
import test from "ava";
import { keyHex } from "../../src/keys/store.js";
import { waitFor } from "../harness/wait.js";
import { type TestCluster, testCluster } from "../helpers/cluster.js";
import { heldIn } from "../helpers/state.js";
import {
  authorized,
  banLine,
  sign,
  startTestMonitor,
  startTestPublisher,
  startTestSubscriber,
  submitter,
  type TestPublisher,
  type TestSubscriber,
} from "./helpers.js";

/**
 * A ban has holders: every origin that banned an address keeps it banned until that origin unbans
 * or its own ban expires, at the publisher and at every subscriber, whatever the order of events
 * and whichever publisher carried them. Real daemons on loopback; the subscribers act through the
 * `log` action, whose lines say what fail2ban would have been asked.
 */
const END_TO_END_MS = 20_000;
const X = "203.0.113.50";

/** Waits until `subscriber` has applied everything each publisher has numbered so far. */
async function caughtUp(subscriber: TestSubscriber, publishers: readonly TestPublisher[]): Promise<void> {
  await waitFor(
    () =>
      publishers.every(
        (p) =>
          subscriber.running.store.publisherSeq(keyHex(p.node.identity.curvePublic)) ===
          p.running.store.publisherSeq,
      )
        ? true
        : undefined,
    { timeoutMs: END_TO_END_MS, intervalMs: 50, what: `${subscriber.node.name} to catch up` },
  );
}

async function holds(subscriber: TestSubscriber, expected: readonly string[], what: string): Promise<void> {
  const want = JSON.stringify([...expected].sort());
  await waitFor(() => (JSON.stringify(subscriber.bans()) === want ? true : undefined), {
    timeoutMs: END_TO_END_MS,
    intervalMs: 50,
    what,
  });
}

async function setup(t: Parameters<typeof testCluster>[0]) {
  const cluster: TestCluster = await testCluster(t);
  const [a, b] = await authorized(cluster, "monitor", "web1", "web2");
  const [app1, app2] = await authorized(cluster, "subscriber", "app1", "app2");
  const publisher = await startTestPublisher(t, cluster);
  // One subscriber bans into the one cluster jail (the default), one into each event's own jail.
  const cluster1 = await startTestSubscriber(t, cluster, app1!, [publisher], { jail: "f2bz" });
  const same = await startTestSubscriber(t, cluster, app2!, [publisher]);
  const settle = async () => {
    for (const s of [cluster1, same]) await caughtUp(s, [publisher]);
  };
  return { cluster, a: a!, b: b!, publisher, cluster1, same, subscribers: [cluster1, same], settle };
}

test.serial(
  "B bans X in sshd, A bans X in jail x and lifts it: X stays banned everywhere until B lifts it",
  async (t) => {
    const { a, b, publisher, cluster1, same, settle } = await setup(t);
    const A = submitter(t, a, publisher);
    const B = submitter(t, b, publisher);
    t.like(await B.submit(await sign(b.identity, { seq: 1, ip: X })), { type: "ack" });
    await settle();
    t.like(await A.submit(await sign(a.identity, { seq: 1, ip: X, jail: "x" })), { type: "ack" });
    await settle();
    t.deepEqual(same.bans(), [`sshd ${X}`, `x ${X}`]);
    t.like(await A.submit(await sign(a.identity, { seq: 2, ip: X, jail: "x", kind: "unban" })), {
      type: "ack",
    });
    await settle();
    t.deepEqual(cluster1.bans(), [`f2bz ${X}`], "A's unban does not lift B's ban in the cluster jail");
    t.deepEqual(same.bans(), [`sshd ${X}`]);
    // The cluster jail was asked to ban X once, when its first holder came, and never to unban it.
    t.deepEqual(cluster1.actions(), [`ban f2bz ${X}`]);
    // B's own ban again is absorbed: B still holds X.
    t.like(await B.submit(await sign(b.identity, { seq: 2, ip: X })), { type: "ack" });
    t.is(publisher.running.metrics.get("submissions_accepted_total", { outcome: "already-active" }), 1);

    t.like(await B.submit(await sign(b.identity, { seq: 3, ip: X, kind: "unban" })), { type: "ack" });
    await settle();
    t.deepEqual(cluster1.bans(), []);
    t.deepEqual(same.bans(), []);
    t.deepEqual(cluster1.actions(), [`ban f2bz ${X}`, `unban f2bz ${X}`]);
  },
);

test.serial(
  "A bans X first, B bans X too, A lifts it: X stays banned everywhere until B's ban expires",
  async (t) => {
    const { a, b, publisher, cluster1, same, subscribers, settle } = await setup(t);
    const A = submitter(t, a, publisher);
    const B = submitter(t, b, publisher);
    t.like(await A.submit(await sign(a.identity, { seq: 1, ip: X })), { type: "ack" });
    await settle();
    const expires = Date.now() + 4_000;
    t.like(await B.submit(await sign(b.identity, { seq: 1, ip: X, expires })), { type: "ack" });
    t.like(await A.submit(await sign(a.identity, { seq: 2, ip: X, kind: "unban" })), { type: "ack" });
    await settle();
    t.true(Date.now() < expires, "checked before B's ban expires");
    t.deepEqual(cluster1.bans(), [`f2bz ${X}`], "A's unban does not lift B's ban");
    t.deepEqual(same.bans(), [`sshd ${X}`]);
    t.deepEqual(
      heldIn("publisher", publisher.node.stateDir, Date.now()).map((h) => [h.jail, h.ip, h.id]),
      [["sshd", X, `${b.identity.nodeId}:1`]],
    );
    // B's hold reached the subscribers without asking fail2ban to ban X a second time.
    t.deepEqual(cluster1.actions(), [`ban f2bz ${X}`]);
    t.deepEqual(same.actions(), [`ban sshd ${X}`]);

    for (const s of subscribers) await holds(s, [], `${s.node.name} to lift X when B's ban expires`);
    t.true(Date.now() >= expires);
    t.deepEqual(cluster1.actions(), [`ban f2bz ${X}`, `unban f2bz ${X}`]);
  },
);

test.serial(
  "honest monitors, two jails: the shorter ban (A, jail x) ending does not lift the longer (B, sshd)",
  async (t) => {
    const { cluster, a, b, publisher, cluster1, settle } = await setup(t);
    const monitorA = await startTestMonitor(t, cluster, a, [publisher]);
    const monitorB = await startTestMonitor(t, cluster, b, [publisher]);
    await monitorB.ban(X, "sshd");
    await holds(cluster1, [`f2bz ${X}`], "B's ban at the subscriber");
    await monitorA.ban(X, "x");
    await waitFor(
      () =>
        publisher.running.metrics.get("submissions_accepted_total", { outcome: "broadcast" }) === 2
          ? true
          : undefined,
      {
        timeoutMs: END_TO_END_MS,
        what: "A's ban to be broadcast",
      },
    );
    // A's fail2ban lifts its own ban after its (shorter) bantime: that `Unban` travels.
    await appendFile(monitorA.log, banLine("x", X, "Unban"));
    await waitFor(
      () =>
        publisher.running.metrics.get("submissions_accepted_total", { outcome: "broadcast" }) === 3
          ? true
          : undefined,
      {
        timeoutMs: END_TO_END_MS,
        what: "A's unban to be broadcast",
      },
    );
    await settle();
    t.deepEqual(cluster1.bans(), [`f2bz ${X}`]);
    t.deepEqual(cluster1.actions(), [`ban f2bz ${X}`]);
  },
);

test.serial(
  "two publishers that got the bans of A and B in opposite orders end with the same holders, and so do their subscribers",
  async (t) => {
    const cluster = await testCluster(t);
    const [a, b] = await authorized(cluster, "monitor", "web1", "web2");
    const [app1, app2, app3] = await authorized(cluster, "subscriber", "app1", "app2", "app3");
    const pub1 = await startTestPublisher(t, cluster, { name: "pub1" });
    const pub2 = await startTestPublisher(t, cluster, { name: "pub2" });
    const only1 = await startTestSubscriber(t, cluster, app1!, [pub1], { jail: "f2bz" });
    const only2 = await startTestSubscriber(t, cluster, app2!, [pub2], { jail: "f2bz" });
    const both = await startTestSubscriber(t, cluster, app3!, [pub1, pub2], { jail: "f2bz" });
    const subscribers = [only1, only2, both];
    const settle = async () => {
      await caughtUp(only1, [pub1]);
      await caughtUp(only2, [pub2]);
      await caughtUp(both, [pub1, pub2]);
    };
    const banA = await sign(a!.identity, { seq: 1, ip: X });
    const banB = await sign(b!.identity, { seq: 1, ip: X });
    const A1 = submitter(t, a!, pub1);
    const B1 = submitter(t, b!, pub1);
    const A2 = submitter(t, a!, pub2);
    const B2 = submitter(t, b!, pub2);
    // pub2 (and through it the subscriber that follows both) hears of B first, pub1 of A first.
    await B2.submit(banB);
    await settle();
    await A1.submit(banA);
    await settle();
    await B1.submit(banB);
    await A2.submit(banA);
    await settle();
    const unbanA = await sign(a!.identity, { seq: 2, ip: X, kind: "unban" });
    await A1.submit(unbanA);
    await A2.submit(unbanA);
    await settle();

    for (const s of subscribers) {
      t.deepEqual(s.bans(), [`f2bz ${X}`], `${s.node.name} keeps B's ban`);
      t.deepEqual(s.actions(), [`ban f2bz ${X}`], `${s.node.name} asked fail2ban once`);
    }

    const holders = (p: TestPublisher) => heldIn("publisher", p.node.stateDir, Date.now());
    t.deepEqual(holders(pub1), holders(pub2), "both publishers hold the same bans");
    t.deepEqual(
      holders(pub1).map((h) => h.id),
      [banB.event.id],
    );
    const unbanB = await sign(b!.identity, { seq: 2, ip: X, kind: "unban" });
    await B2.submit(unbanB);
    await B1.submit(unbanB);
    await settle();
    for (const s of subscribers) t.deepEqual(s.bans(), [], `${s.node.name} lifts X with its last holder`);
  },
);
