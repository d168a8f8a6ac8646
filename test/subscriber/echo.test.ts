import anyTest from "ava";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";
import { testCluster } from "../helpers/cluster.js";
import {
  DEADLINE_MS,
  startTestMonitor,
  startTestPublisher,
  startTestSubscriber,
  waitCounter,
} from "./helpers.js";

/**
 * The echo loop on one host (DESIGN §5): host B runs a subscriber and a monitor on the same
 * fail2ban. What the subscriber applies shows up in B's fail2ban.log as an ordinary `Ban`/`Unban`;
 * the monitor must recognise it from the subscriber's ledger (the shared state file in the node's
 * state directory) and publish nothing. With jail "same" the ledger is the only thing that can tell.
 */
const test = ensureFail2ban(anyTest);

for (const variant of [
  { jail: "same", target: "sshd-test", ignoreJails: undefined },
  // The cluster jail, with monitor.ignoreJails emptied so that the ledger alone stops the echo.
  { jail: "f2bz", target: "f2bz", ignoreJails: [] as string[] },
]) {
  test.serial(
    `B's applied ban and unban are not re-published by B's monitor (jail ${variant.jail})`,
    async (t) => {
      t.timeout(60_000);
      const [labA, labB] = await Promise.all([
        startFail2ban({ label: "a", jails: ["sshd-test"] }),
        startFail2ban({ label: "b", jails: ["sshd-test", "f2bz"] }),
      ]);
      t.teardown(() => Promise.all([labA.cleanup(), labB.cleanup()]));
      const cluster = await testCluster(t);
      const [a, b] = await Promise.all([cluster.node("a"), cluster.node("b")]);
      for (const node of [a, b]) {
        await cluster.authorize(node, "monitor");
        await cluster.authorize(node, "subscriber");
      }
      const pub = await startTestPublisher(t, cluster);
      await startTestMonitor(t, cluster, a, { log: labA.paths.log, publishers: [pub.monitorEntry] });
      // Host B: subscriber and monitor of the same node, sharing its state directory.
      const subB = await startTestSubscriber(t, cluster, b, {
        publishers: [pub.entry],
        action: { type: "fail2ban", jail: variant.jail, client: labB.paths.client },
      });
      const monB = await startTestMonitor(t, cluster, b, {
        log: labB.paths.log,
        publishers: [pub.monitorEntry],
        ...(variant.ignoreJails ? { ignoreJails: variant.ignoreJails } : {}),
      });
      await waitCounter(
        { get: () => subB.metrics.get("snapshot_loads_total", { result: "loaded" }) },
        "snapshot.loaded",
      );
      const ip = variant.jail === "same" ? "192.0.2.121" : "2001:db8::121";

      await labA.fail(ip, "sshd-test");
      await labB.waitBanned(variant.target, ip, DEADLINE_MS);
      const escaped = ip.replace(/[.:]/g, "\\$&");
      await labB.waitLog(new RegExp(`\\[${variant.target}\\] Ban ${escaped}$`), DEADLINE_MS);
      // B's monitor has read that line and recognised it.
      await waitCounter({ get: () => monB.metrics.get("events_echo_total") }, "events.echo", 1);
      t.is(monB.metrics.get("events_published_total"), 0);
      t.is(pub.running.metrics.get("submissions_total"), 1, "only A's ban reached the publisher");

      t.is((await labA.client(["set", "sshd-test", "unbanip", ip])).code, 0);
      await labB.waitUnbanned(variant.target, ip, 30_000);
      await labB.waitLog(new RegExp(`\\[${variant.target}\\] Unban ${escaped}$`), DEADLINE_MS);
      await waitCounter({ get: () => monB.metrics.get("events_echo_total") }, "events.echo", 2);
      t.is(monB.metrics.get("events_published_total"), 0);
      t.is(pub.running.metrics.get("submissions_total"), 2, "A's ban and A's unban, nothing from B");
    },
  );
}

test.serial("a ban fail2ban on B makes by itself is still published by B's monitor", async (t) => {
  // The ledger must not swallow B's own bans: only what the subscriber applied is an echo.
  t.timeout(60_000);
  const labB = await startFail2ban({ label: "b", jails: ["sshd-test", "f2bz"] });
  t.teardown(() => labB.cleanup());
  const cluster = await testCluster(t);
  const b = await cluster.node("b");
  await cluster.authorize(b, "monitor");
  await cluster.authorize(b, "subscriber");
  const pub = await startTestPublisher(t, cluster);
  const subB = await startTestSubscriber(t, cluster, b, {
    publishers: [pub.entry],
    action: { type: "fail2ban", jail: "same", client: labB.paths.client },
  });
  const monB = await startTestMonitor(t, cluster, b, { log: labB.paths.log, publishers: [pub.monitorEntry] });
  await waitCounter(
    { get: () => subB.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
  );
  await labB.fail("192.0.2.131", "sshd-test");
  await waitCounter({ get: () => monB.metrics.get("events_published_total") }, "events.published", 1);
  await waitCounter(
    { get: () => pub.running.metrics.get("submissions_accepted_total", { outcome: "broadcast" }) },
    "broadcast",
    1,
  );
  // Its own event comes back through the publisher and is dropped as an echo, not applied again.
  await waitCounter(
    { get: () => subB.metrics.get("events_dropped_total", { reason: "echo" }) },
    "dropped.echo",
    1,
  );
  t.deepEqual(subB.store.applied(), []);
});
