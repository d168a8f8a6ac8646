import { readdir } from "node:fs/promises";
import test from "ava";
import { revokedDir } from "../../src/keys/store.js";
import { waitFor } from "../harness/wait.js";
import { ensureBuilt, runCli } from "../helpers/cli.js";
import { testCluster } from "../helpers/cluster.js";
import { heldIn } from "../helpers/state.js";
import { authorized, sign, startTestPublisher, startTestSubscriber, submitter } from "./helpers.js";

/**
 * `f2bz keys revoke NAME --purge-bans`, run as an operator would, against a running publisher and
 * subscriber: the revoked monitor's bans are lifted everywhere unless another origin holds them too.
 */
const END_TO_END_MS = 20_000;

test.before(() => ensureBuilt());

test.serial(
  "keys revoke --purge-bans lifts the revoked monitor's bans, not the ones others hold",
  async (t) => {
    const cluster = await testCluster(t);
    const [bad, good] = await authorized(cluster, "monitor", "web1", "web2");
    const [app1] = await authorized(cluster, "subscriber", "app1");
    const publisher = await startTestPublisher(t, cluster);
    const subscriber = await startTestSubscriber(t, cluster, app1!, [publisher], { jail: "f2bz" });
    const fromBad = submitter(t, bad!, publisher);
    const fromGood = submitter(t, good!, publisher);
    for (const [i, ip] of ["203.0.113.1", "203.0.113.2", "2001:db8::3"].entries()) {
      t.like(await fromBad.submit(await sign(bad!.identity, { seq: i + 1, ip })), { type: "ack" });
    }
    t.like(await fromGood.submit(await sign(good!.identity, { seq: 1, ip: "203.0.113.2" })), { type: "ack" });
    const all = ["f2bz 2001:db8::3", "f2bz 203.0.113.1", "f2bz 203.0.113.2"];
    const holding = (expected: readonly string[], what: string) =>
      waitFor(() => (JSON.stringify(subscriber.bans()) === JSON.stringify(expected) ? true : undefined), {
        timeoutMs: END_TO_END_MS,
        intervalMs: 50,
        what,
      });
    await holding(all, "every ban at the subscriber");

    const result = await runCli(["keys", "revoke", "web1", "--purge-bans", "--keys", cluster.keysDir]);
    t.is(result.code, 0, result.stderr);
    t.regex(result.stdout, /^revoked monitor web1$/m);
    t.regex(result.stdout, new RegExp(`bans of web1 \\(node ${bad!.identity.nodeId}\\) will be lifted`));

    await holding(["f2bz 203.0.113.2"], "the revoked monitor's bans to be lifted");
    t.deepEqual(
      heldIn("publisher", publisher.node.stateDir, Date.now()).map((h) => [h.ip, h.origin]),
      [["203.0.113.2", good!.identity.nodeId]],
    );
    t.is(publisher.running.metrics.get("bans_purged_total"), 3);
    t.deepEqual(
      subscriber.actions().filter((a) => a.startsWith("unban")),
      ["unban f2bz 203.0.113.1", "unban f2bz 2001:db8::3"].sort(),
      "fail2ban asked to unban the two addresses nobody else holds",
    );
    // The marker is consumed; the revoked key stays.
    await waitFor(
      async () => ((await readdir(revokedDir(cluster.keysDir))).join() === "web1.key" ? true : undefined),
      { timeoutMs: END_TO_END_MS, what: "the purge marker to be removed" },
    );
  },
);

test("keys revoke without --purge-bans leaves the bans to their expiry", async (t) => {
  const cluster = await testCluster(t);
  await authorized(cluster, "monitor", "web1");
  const result = await runCli(["keys", "revoke", "web1", "--keys", cluster.keysDir]);
  t.is(result.code, 0, result.stderr);
  t.deepEqual(await readdir(revokedDir(cluster.keysDir)), ["web1.key"]);
  t.notRegex(result.stdout, /will be lifted/);
});
