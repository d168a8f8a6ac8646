import anyTest, { type ExecutionContext } from "ava";
import {
  ensureFail2ban,
  type Fail2banLab,
  type Fail2banLabOptions,
  startFail2ban,
} from "../harness/fail2ban.js";
import { waitFor } from "../harness/wait.js";
import { type TestCluster, type TestNode, testCluster } from "../helpers/cluster.js";
import {
  DEADLINE_MS,
  startTestMonitor,
  startTestPublisher,
  startTestSubscriber,
  type TestPublisher,
  waitCounter,
} from "./helpers.js";

/**
 * Two hosts, each a real fail2ban server from the project's harness: A with a monitor on its log, B
 * with a subscriber that bans through B's fail2ban-client; one publisher between them. The way an
 * operator would see it: a filter ban on A shows up in B's jail.
 */
const test = ensureFail2ban(anyTest);

interface TwoHosts {
  labA: Fail2banLab;
  labB: Fail2banLab;
  cluster: TestCluster;
  a: TestNode;
  b: TestNode;
  pub: TestPublisher;
  /** Subscriber sections for B, with B's fail2ban-client and the given action fields. */
  subscriber(action: Record<string, unknown>, extra?: Record<string, unknown>): Record<string, unknown>;
}

async function twoHosts(
  t: ExecutionContext,
  options: { labB?: Fail2banLabOptions; banTime?: string } = {},
): Promise<TwoHosts> {
  const [labA, labB] = await Promise.all([
    startFail2ban({ label: "a", jails: ["sshd-test"] }),
    startFail2ban({ label: "b", jails: ["sshd-test", "f2bz"], ...options.labB }),
  ]);
  t.teardown(() => Promise.all([labA.cleanup(), labB.cleanup()]));
  const cluster = await testCluster(t);
  const [a, b] = await Promise.all([cluster.node("a"), cluster.node("b")]);
  await cluster.authorize(a, "monitor");
  await cluster.authorize(b, "subscriber");
  const pub = await startTestPublisher(t, cluster);
  await startTestMonitor(t, cluster, a, {
    log: labA.paths.log,
    publishers: [pub.monitorEntry],
    banTime: options.banTime ?? "1h",
  });
  return {
    labA,
    labB,
    cluster,
    a,
    b,
    pub,
    subscriber: (action, extra = {}) => ({
      publishers: [pub.entry],
      action: { type: "fail2ban", client: labB.paths.client, ...action },
      ...extra,
    }),
  };
}

test.serial(
  "a filter ban on A reaches B's cluster jail, IPv4 and IPv6, and A's unban lifts it",
  async (t) => {
    t.timeout(60_000);
    const h = await twoHosts(t, { labB: { ignoreip: ["198.51.100.0/24"] } });
    const sub = await startTestSubscriber(
      t,
      h.cluster,
      h.b,
      h.subscriber({ jail: "f2bz" }, { neverBan: ["192.0.2.70"] }),
    );
    await waitCounter(
      { get: () => sub.metrics.get("snapshot_loads_total", { result: "loaded" }) },
      "snapshot.loaded",
    );

    for (const ip of ["192.0.2.61", "2001:db8::61", "192.0.2.70", "198.51.100.71"])
      await h.labA.fail(ip, "sshd-test");
    await h.labB.waitBanned("f2bz", "192.0.2.61", DEADLINE_MS);
    await h.labB.waitBanned("f2bz", "2001:db8::61", DEADLINE_MS);
    // subscriber.neverBan and the ignoreip of B's jail (which banip would bypass) are refused.
    await waitCounter(
      { get: () => sub.metrics.get("events_dropped_total", { reason: "never-ban" }) },
      "dropped.never-ban",
      2,
    );
    t.deepEqual((await h.labB.banned("f2bz")).sort(), ["192.0.2.61", "2001:db8::61"]);
    t.deepEqual(await h.labB.banned("sshd-test"), [], "the cluster jail only");
    t.deepEqual((await h.labA.banned("sshd-test")).sort(), [
      "192.0.2.61",
      "192.0.2.70",
      "198.51.100.71",
      "2001:db8::61",
    ]);

    // An operator lifts the ban on A; it travels (after the monitor's hold for stop bursts).
    t.is((await h.labA.client(["set", "sshd-test", "unbanip", "2001:db8::61"])).code, 0);
    await h.labB.waitUnbanned("f2bz", "2001:db8::61", 30_000);
    t.deepEqual(await h.labB.banned("f2bz"), ["192.0.2.61"]);
    t.deepEqual(
      sub.store.applied().map((b) => [b.jail, b.ip]),
      [["f2bz", "192.0.2.61"]],
    );
    t.regex(await h.labB.actions(), /^.*ban f2bz 2001:db8::61$/m);
    t.regex(await h.labB.actions(), /^.*unban f2bz 2001:db8::61$/m);
  },
);

test.serial("the expiry the event carries unbans on B, also across a subscriber restart", async (t) => {
  t.timeout(60_000);
  // monitor.banTime on A: B keeps the ban this long, whatever B's own jail bantime (600 s) says.
  const h = await twoHosts(t, { banTime: "8s" });
  const sections = h.subscriber({ jail: "same" });
  const first = await startTestSubscriber(t, h.cluster, h.b, sections);
  await waitCounter(
    { get: () => first.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
  );
  await h.labA.fail("192.0.2.91", "sshd-test");
  await h.labB.waitBanned("sshd-test", "192.0.2.91", DEADLINE_MS);
  const [held] = first.store.applied();
  t.is(held?.ip, "192.0.2.91");
  await first.close();
  t.true(Date.now() < held!.expires, "stopped before the expiry (else this test proves nothing)");
  t.deepEqual(await h.labB.banned("sshd-test"), ["192.0.2.91"], "stopping the subscriber lifts nothing");

  const second = await startTestSubscriber(t, h.cluster, h.b, sections);
  await h.labB.waitUnbanned("sshd-test", "192.0.2.91", 30_000);
  t.true(Date.now() >= held!.expires, "not before its expiry");
  t.is(second.metrics.get("bans_expired_total"), 1);
  t.deepEqual(second.store.applied(), []);
  t.deepEqual(await h.labA.banned("sshd-test"), ["192.0.2.91"], "A's own ban runs on its own bantime");
});

test.serial(
  "a held ban that B's fail2ban forgot (restart past dbpurgeage) is applied again at start",
  async (t) => {
    t.timeout(60_000);
    const h = await twoHosts(t);
    const sections = h.subscriber({ jail: "f2bz" });
    const first = await startTestSubscriber(t, h.cluster, h.b, sections);
    await waitCounter(
      { get: () => first.metrics.get("snapshot_loads_total", { result: "loaded" }) },
      "snapshot.loaded",
    );
    await h.labA.fail("198.51.100.93", "sshd-test");
    await h.labB.waitBanned("f2bz", "198.51.100.93", DEADLINE_MS);
    await first.close();
    // As fail2ban does with bans older than dbpurgeage when it restarts: the ban is simply gone.
    t.is((await h.labB.client(["set", "f2bz", "unbanip", "198.51.100.93"])).code, 0);
    t.deepEqual(await h.labB.banned("f2bz"), []);

    const second = await startTestSubscriber(t, h.cluster, h.b, sections);
    await h.labB.waitBanned("f2bz", "198.51.100.93", DEADLINE_MS);
    t.is(second.store.applied().length, 1);
  },
);

test.serial("a subscriber started after the ban gets it from the snapshot", async (t) => {
  t.timeout(60_000);
  const h = await twoHosts(t);
  await h.labA.fail("203.0.113.101", "sshd-test");
  await h.labA.fail("2001:db8::101", "sshd-test");
  await waitCounter(
    { get: () => h.pub.running.metrics.get("submissions_accepted_total", { outcome: "broadcast" }) },
    "broadcast",
    2,
  );

  const sub = await startTestSubscriber(t, h.cluster, h.b, h.subscriber({ jail: "f2bz" }));
  await h.labB.waitBanned("f2bz", "203.0.113.101", DEADLINE_MS);
  await h.labB.waitBanned("f2bz", "2001:db8::101", DEADLINE_MS);
  t.is(sub.metrics.get("events_accepted_total", { source: "snapshot" }), 2);
  await waitFor(() => (sub.store.applied().length === 2 ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "both bans recorded with their expiry",
  });
  for (const ban of sub.store.applied()) t.true(ban.expires > Date.now() + 30 * 60_000, ban.ip);
});

test.serial("with jail 'same', an event for a jail B lacks goes to fallbackJail, or nowhere", async (t) => {
  t.timeout(60_000);
  const h = await twoHosts(t, { labB: { jails: ["web-01", "f2bz"] } });
  const sub = await startTestSubscriber(
    t,
    h.cluster,
    h.b,
    h.subscriber({ jail: "same", fallbackJail: "f2bz" }),
  );
  await waitCounter(
    { get: () => sub.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
  );
  await h.labA.fail("192.0.2.111", "sshd-test");
  await h.labB.waitBanned("f2bz", "192.0.2.111", DEADLINE_MS);
  t.deepEqual(await h.labB.banned("web-01"), []);
  await sub.close();

  // Without fallbackJail the event is refused and counted; fail2ban is not asked.
  const strict = await startTestSubscriber(t, h.cluster, h.b, h.subscriber({ jail: "same" }));
  await waitCounter(
    { get: () => strict.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
  );
  await h.labA.fail("192.0.2.112", "sshd-test");
  await waitCounter(
    { get: () => strict.metrics.get("events_dropped_total", { reason: "jail" }) },
    "dropped.jail",
  );
  t.deepEqual(
    strict.store.applied().map((b) => [b.jail, b.ip]),
    [["f2bz", "192.0.2.111"]],
  );
  t.deepEqual(await h.labB.banned("f2bz"), ["192.0.2.111"]);
});
