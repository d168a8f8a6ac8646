import { setTimeout as delay } from "node:timers/promises";
import test from "ava";
import { waitFor } from "../harness/wait.js";
import {
  addresses,
  appliedLines,
  CATCH_UP_MS,
  FAULT_MS,
  faultLab,
  spawn,
  startSubscriber,
  waitApplied,
} from "./helpers.js";

/**
 * Network faults (issue 14, point 2). The cut is a publisher stopped with SIGSTOP for FAULT_MS
 * (20 s, 60 s with F2BZ_FAULT_LONG=1): its sockets stay open and silent, as behind a dead link,
 * so monitors time out on their acks and subscribers miss heartbeats. Network namespaces would
 * cut a veth instead; the test stays on loopback, which every CI runner has.
 */

test("monitor and subscriber cut off from the publisher for a while catch up fully", async (t) => {
  t.timeout(FAULT_MS + 3 * CATCH_UP_MS);
  const lab = await faultLab(t);
  const pub = await lab.publisher("pub");
  const monitor = spawn(t, "monitor", await lab.monitorConfig("mon", [pub]));
  const sub = await lab.subscriberConfig("sub", [pub], "log");
  const publisher = await pub.start();
  await startSubscriber(t, sub);
  await monitor.waitLog("following log file");

  const before = addresses(50);
  await lab.ban(before);
  await waitApplied(sub.applied, "ban", before);
  publisher.child.kill("SIGSTOP");
  const during = addresses(200, before.length);
  await lab.ban(during);
  // The cut lasts FAULT_MS by design: it is the fault, not a wait for something.
  await delay(FAULT_MS);
  t.is((await appliedLines(sub.applied)).length, before.length, "nothing passed the cut");
  publisher.child.kill("SIGCONT");

  const after = addresses(50, before.length + during.length);
  await lab.ban(after);
  const lines = await waitApplied(sub.applied, "ban", [...before, ...during, ...after]);
  t.is(new Set(lines).size, lines.length, "nothing applied twice");
});

test("two publishers, one killed mid-stream: the subscribers miss nothing", async (t) => {
  t.timeout(3 * CATCH_UP_MS);
  const lab = await faultLab(t);
  const pubs = [await lab.publisher("pub1"), await lab.publisher("pub2")];
  const monitor = spawn(t, "monitor", await lab.monitorConfig("mon", pubs));
  const subs = await Promise.all(["sub1", "sub2"].map((name) => lab.subscriberConfig(name, pubs, "log")));
  for (const pub of pubs) await pub.start();
  for (const sub of subs) await startSubscriber(t, sub);
  await monitor.waitLog("following log file");

  const ips = addresses(1000);
  await lab.ban(ips);
  await waitFor(async () => ((await appliedLines(subs[0]!.applied)).length >= 100 ? true : undefined), {
    timeoutMs: CATCH_UP_MS,
    what: "100 bans applied before the kill",
  });
  const killed = pubs[0]!.daemon!;
  killed.child.kill("SIGKILL");
  t.is((await killed.exited).signal, "SIGKILL");

  for (const sub of subs) {
    const lines = await waitApplied(sub.applied, "ban", ips);
    t.is(new Set(lines).size, lines.length, `${sub.applied}: nothing applied twice`);
  }
});
