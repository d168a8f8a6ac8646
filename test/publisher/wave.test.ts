import test from "ava";
import { testCluster } from "../helpers/cluster.js";
import { sign } from "../helpers/events.js";
import { authorized, startTestPublisher, submitter } from "./helpers.js";

/**
 * Issue 11: an attack wave from one node passes at full speed with the default limits. A flooding
 * node is held by `maxActivePerOrigin`, not by a per-second rate that delays honest bans for minutes.
 */
const WAVE = 20_000;

test("a 20,000-ban wave from one origin is accepted whole with the default limits", async (t) => {
  t.timeout(5 * 60_000);
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const publisher = await startTestPublisher(t, cluster);
  const monitor = submitter(t, web1!, publisher);
  const refused = new Map<string, number>();
  for (let seq = 1; seq <= WAVE; seq++) {
    // Distinct addresses in 198.18.0.0/15, the range set aside for benchmarks (RFC 2544).
    const ip = `198.18.${seq >> 8}.${seq & 255}`;
    const reply = await monitor.submit(await sign(web1!.identity, { seq, ip }));
    if (reply.type !== "ack") refused.set(reply.reason, (refused.get(reply.reason) ?? 0) + 1);
  }
  t.deepEqual(Object.fromEntries(refused), {}, "no event refused (rate-limited or otherwise)");
  t.is(publisher.running.store.activeCount(), WAVE);
});
