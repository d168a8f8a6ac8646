import test from "ava";
import { keyHex } from "../../src/keys/store.js";
import { PublisherStore } from "../../src/publisher/store.js";
import { waitFor } from "../harness/wait.js";
import { testCluster } from "../helpers/cluster.js";
import { heldIn } from "../helpers/state.js";
import {
  authorized,
  sign,
  startTestMonitor,
  startTestPublisher,
  startTestSubscriber,
  type TestSubscriber,
} from "./helpers.js";

/**
 * End to end on loopback with the real daemons: monitors tailing fail2ban log files, publishers,
 * subscribers applying through the `log` action, every link CURVE with keys made for the run.
 * Serial: each test runs about a dozen sockets and three SQLite files per daemon kind.
 */
const END_TO_END_MS = 20_000;

async function allHave(subscribers: readonly TestSubscriber[], expected: readonly string[], what: string) {
  const want = [...expected].sort();
  await waitFor(
    () => (subscribers.every((s) => JSON.stringify(s.bans()) === JSON.stringify(want)) ? true : undefined),
    { timeoutMs: END_TO_END_MS, intervalMs: 100, what },
  );
}

test.serial(
  "bans from three monitors reach three subscribers; a ban seen by all has three holders, applied once",
  async (t) => {
    const cluster = await testCluster(t);
    const monitorNodes = await authorized(cluster, "monitor", "web1", "web2", "web3");
    const subscriberNodes = await authorized(cluster, "subscriber", "app1", "app2", "app3");
    const publisher = await startTestPublisher(t, cluster);
    const subscribers = await Promise.all(
      subscriberNodes.map((n) => startTestSubscriber(t, cluster, n, [publisher])),
    );
    const monitors = await Promise.all(monitorNodes.map((n) => startTestMonitor(t, cluster, n, [publisher])));

    const own = ["203.0.113.10", "198.51.100.20", "2001:db8::30"];
    for (const [i, monitor] of monitors.entries()) await monitor.ban(own[i]!);
    await allHave(
      subscribers,
      own.map((ip) => `sshd ${ip}`),
      "every subscriber to hold each monitor's ban",
    );

    // The same attacker seen everywhere: each monitor's ban is a holder of its own, broadcast so
    // that the address stays banned until the last of them lifts it; each subscriber bans it once.
    for (const monitor of monitors) await monitor.ban("203.0.113.66");
    await waitFor(
      () =>
        publisher.running.metrics.get("submissions_accepted_total", { outcome: "broadcast" }) === 6
          ? true
          : undefined,
      {
        timeoutMs: END_TO_END_MS,
        what: "the two later reports to be broadcast as holders",
      },
    );
    await allHave(
      subscribers,
      [...own, "203.0.113.66"].map((ip) => `sshd ${ip}`),
      "the shared ban everywhere",
    );
    t.is(publisher.running.metrics.get("submissions_accepted_total", { outcome: "already-active" }), 0);
    t.is(publisher.running.store.activeCount(), 4);
    t.is(heldIn("publisher", publisher.node.stateDir).length, 6);
    await waitFor(
      () =>
        subscribers.every(
          (s) => s.running.store.publisherSeq(keyHex(publisher.node.identity.curvePublic)) === 6,
        )
          ? true
          : undefined,
      { timeoutMs: END_TO_END_MS, what: "every subscriber to apply the six broadcasts" },
    );
    for (const s of subscribers) {
      t.is(s.actions().filter((a) => a === "ban sshd 203.0.113.66").length, 1, `${s.node.name} bans it once`);
    }
    // The acks may still be on their way back.
    await waitFor(() => (monitors.every((m) => m.running.outbox.size() === 0) ? true : undefined), {
      timeoutMs: END_TO_END_MS,
      what: "every monitor to have nothing left to deliver",
    });
  },
);

test.serial(
  "one of two publishers closed mid-stream: every subscriber still ends with every ban",
  async (t) => {
    const cluster = await testCluster(t);
    const monitorNodes = await authorized(cluster, "monitor", "web1", "web2", "web3");
    const subscriberNodes = await authorized(cluster, "subscriber", "app1", "app2");
    const first = await startTestPublisher(t, cluster, { name: "pub1" });
    const second = await startTestPublisher(t, cluster, { name: "pub2" });
    const both = [first, second];
    const subscribers = await Promise.all(
      subscriberNodes.map((n) => startTestSubscriber(t, cluster, n, both)),
    );
    const monitors = await Promise.all(monitorNodes.map((n) => startTestMonitor(t, cluster, n, both)));

    const ips = [
      ...Array.from({ length: 12 }, (_, i) => `203.0.113.${100 + i}`),
      ...Array.from({ length: 12 }, (_, i) => `198.51.100.${100 + i}`),
      ...Array.from({ length: 6 }, (_, i) => `2001:db8::${(0x100 + i).toString(16)}`),
    ];
    const third = ips.length / 3;
    const write = async (part: readonly string[]) => {
      for (const [i, ip] of part.entries()) await monitors[i % monitors.length]!.ban(ip);
    };
    await write(ips.slice(0, third));
    // Both publishers fan out: each subscriber gets the same events twice and keeps them once.
    await waitFor(
      () =>
        subscribers.every((s) => s.running.metrics.get("events_dropped_total", { reason: "duplicate" }) > 0)
          ? true
          : undefined,
      { timeoutMs: END_TO_END_MS, what: "each subscriber to drop a copy from the other publisher" },
    );
    // Closed while the monitors are still reading and delivering the second part.
    await write(ips.slice(third, 2 * third));
    await first.running.close();
    await write(ips.slice(2 * third));

    await allHave(
      subscribers,
      ips.map((ip) => `sshd ${ip}`),
      "every subscriber to hold every ban through the surviving publisher",
    );
    t.is(second.running.store.activeCount(), ips.length);
    for (const subscriber of subscribers) {
      t.is(subscriber.running.metrics.get("events_dropped_total", { reason: "replay" }), 0);
      t.is(subscriber.bans().length, ips.length, `${subscriber.node.name} holds each ban once`);
    }
  },
);

test.serial(
  "subscribers joining late catch up from a snapshot of several chunks, then follow live",
  async (t) => {
    const cluster = await testCluster(t);
    const [web1] = await authorized(cluster, "monitor", "web1");
    const subscriberNodes = await authorized(cluster, "subscriber", "app1", "app2");
    // The publisher already holds more bans than one snapshot chunk carries (200).
    const pub = await cluster.node("pub");
    const seeded = Array.from({ length: 450 }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);
    const now = Date.now();
    const seed = new PublisherStore(pub.stateDir);
    for (const [i, ip] of seeded.entries()) {
      const e = await sign(web1!.identity, { seq: i + 1, ip, time: now });
      seed.accept({ ...e.event }, e.payload, e.signature, now);
    }
    seed.close();

    const publisher = await startTestPublisher(t, cluster);
    const subscribers = await Promise.all(
      subscriberNodes.map((n) => startTestSubscriber(t, cluster, n, [publisher])),
    );
    const expected = seeded.map((ip) => `sshd ${ip}`);
    await allHave(subscribers, expected, "every subscriber to load the snapshot");

    // The monitor's own numbering goes on after the events it signed before (its state is its own).
    const monitor = await startTestMonitor(t, cluster, web1!, [publisher]);
    await monitor.ban("203.0.113.77");
    await allHave(subscribers, [...expected, "sshd 203.0.113.77"], "the live ban after the snapshot");
    for (const subscriber of subscribers)
      t.true(subscriber.running.metrics.get("snapshot_loads_total", { result: "loaded" }) >= 1);
  },
);
