import test from "ava";
import { waitFor } from "../harness/wait.js";
import { DEADLINE_MS } from "../helpers/logs.js";
import {
  addresses,
  appliedLines,
  CATCH_UP_MS,
  faultLab,
  spawn,
  startSubscriber,
  waitApplied,
} from "./helpers.js";

/**
 * Crash and restart (issue 14, point 1): every daemon is the built CLI, killed with SIGKILL, so
 * nothing gets a chance to flush or say goodbye; what survives is what was on disk.
 */

/** Each address appears once per kind: no event reached the action twice. */
function once(t: import("ava").ExecutionContext, lines: readonly string[], what: string) {
  const dupes = lines.filter((l, i) => lines.indexOf(l) !== i);
  t.deepEqual(dupes.slice(0, 5), [], `${what}: no event applied twice`);
}

test("publisher killed mid-stream of 2,000 bans: after its restart both subscribers have every ban, and its state every holder", async (t) => {
  t.timeout(4 * CATCH_UP_MS);
  const lab = await faultLab(t);
  const pub = await lab.publisher("pub");
  const monitorConfig = await lab.monitorConfig("mon", [pub]);
  const subs = await Promise.all(["sub1", "sub2"].map((name) => lab.subscriberConfig(name, [pub], "log")));
  await pub.start();
  for (const sub of subs) await startSubscriber(t, sub);
  const monitor = spawn(t, "monitor", monitorConfig);
  await monitor.waitLog("following log file");

  const ips = addresses(2000);
  await lab.ban(ips);
  // Mid-stream: some bans are through, many are not.
  await waitFor(async () => ((await appliedLines(subs[0]!.applied)).length >= 200 ? true : undefined), {
    timeoutMs: CATCH_UP_MS,
    what: "200 bans applied before the kill",
  });
  const killed = pub.daemon!;
  killed.child.kill("SIGKILL");
  t.is((await killed.exited).signal, "SIGKILL");
  const before = (await appliedLines(subs[0]!.applied)).length;
  t.true(before < ips.length, `killed mid-stream (${before} applied)`);

  await pub.start();
  for (const sub of subs) once(t, await waitApplied(sub.applied, "ban", ips), sub.applied);
  t.is(pub.activeCount(), ips.length, "the restarted publisher holds every ban");
});
