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
  t.is(pub.held().length, ips.length, "the restarted publisher holds every ban");
});

test("monitor killed with a full outbox (publisher down): after its restart each event reaches the action once", async (t) => {
  t.timeout(3 * CATCH_UP_MS);
  const lab = await faultLab(t);
  const pub = await lab.publisher("pub");
  const monitorConfig = await lab.monitorConfig("mon", [pub]);
  const sub = await lab.subscriberConfig("sub", [pub], "log");
  const ips = addresses(600);

  const first = spawn(t, "monitor", monitorConfig);
  await first.waitLog("following log file");
  await lab.ban(ips);
  await first.waitLog("event queued", ips.length);
  first.child.kill("SIGKILL");
  t.is((await first.exited).signal, "SIGKILL");

  const second = spawn(t, "monitor", monitorConfig);
  await second.waitLog("monitor started");
  await pub.start();
  await startSubscriber(t, sub);
  const more = addresses(10, ips.length);
  await second.waitLog("following log file");
  await lab.ban(more);
  const lines = await waitApplied(sub.applied, "ban", [...ips, ...more]);
  t.is(lines.length, ips.length + more.length, "nothing applied twice, nothing else applied");
  once(t, lines, "sub");
  t.is(
    second.lines.filter((l) => l.msg === "event queued").length,
    more.length,
    "the backlog was not read again",
  );
});

test("subscriber killed: after its restart it converges through the snapshot, and its scheduled unbans happen", async (t) => {
  t.timeout(3 * CATCH_UP_MS);
  const lab = await faultLab(t);
  const pub = await lab.publisher("pub");
  const monitorConfig = await lab.monitorConfig("mon", [pub]);
  const sub = await lab.subscriberConfig("sub", [pub]);
  await pub.start();
  const monitor = spawn(t, "monitor", monitorConfig);
  await monitor.waitLog("following log file");
  const first = await startSubscriber(t, sub);

  // Before the kill: a long ban, and a 4 s one whose unban the subscriber has scheduled.
  await lab.ban(["198.51.100.10"]);
  await lab.ban(["198.51.100.11"], "short");
  await waitApplied(sub.applied, "ban", ["198.51.100.10", "198.51.100.11"], DEADLINE_MS);
  first.child.kill("SIGKILL");
  t.is((await first.exited).signal, "SIGKILL");

  // While it is down: a long ban, and a short one that is made and expires at the publisher.
  await lab.ban(["203.0.113.20", "2001:db8::20"]);
  await lab.ban(["203.0.113.21"], "short");
  await waitFor(() => (pub.held().includes("203.0.113.21") ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "the publisher to hold the short ban made while the subscriber is down",
  });
  const long = ["198.51.100.10", "2001:db8::20", "203.0.113.20"];
  await waitFor(
    () => {
      if (pub.held().join() === long.join()) return true;
      throw new Error(`held ${pub.held().join(" ")}`);
    },
    {
      timeoutMs: DEADLINE_MS,
      what: "the publisher to hold the long bans only (the short ones expired)",
    },
  );

  await startSubscriber(t, sub);
  await waitApplied(sub.applied, "ban", ["203.0.113.20", "2001:db8::20"], DEADLINE_MS);
  const lines = await waitApplied(sub.applied, "unban", ["198.51.100.11"], DEADLINE_MS);
  // What stands at the end: the last action on each address.
  const last = new Map(lines.map((l) => [l.split(" ")[2], l.split(" ")[0]]));
  t.deepEqual(
    [...last]
      .filter(([, kind]) => kind === "ban")
      .map(([ip]) => ip)
      .sort(),
    long,
  );
  once(t, lines, "sub");
});
