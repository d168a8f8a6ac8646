import test from "ava";
import type { FeedMessage } from "../../src/protocol/feed.js";
import { testCluster } from "../helpers/cluster.js";
import { sign } from "../helpers/events.js";
import { authorized, DEADLINE_MS, feedClient, startTestPublisher, submitter } from "./helpers.js";

/**
 * Group commit (issue 11): the submit endpoint serves all monitors together. Every acknowledged
 * event is in the state after a restart, and each origin's events keep their order on the feed.
 */
const PER_MONITOR = 300;

type Update = Extract<FeedMessage, { type: "update" }>;

test("three monitors submitting at once: every event acknowledged, stored, and broadcast in each origin's order", async (t) => {
  t.timeout(3 * 60_000);
  const cluster = await testCluster(t);
  const monitors = await authorized(cluster, "monitor", "m1", "m2", "m3");
  const [sub] = await authorized(cluster, "subscriber", "sub");
  const publisher = await startTestPublisher(t, cluster);
  const feed = feedClient(t, sub!, publisher);
  await feed.ready;

  const acked = await Promise.all(
    monitors.map(async (node, m) => {
      const client = submitter(t, node, publisher);
      const ids: string[] = [];
      for (let seq = 1; seq <= PER_MONITOR; seq++) {
        const event = await sign(node.identity, {
          seq,
          ip: `198.18.${m}.${seq % 256}`,
          jail: `j${seq >> 8}`,
        });
        const reply = await client.submit(event);
        if (reply.type === "ack") ids.push(reply.id);
      }
      return ids;
    }),
  );
  t.deepEqual(
    acked.map((ids) => ids.length),
    [PER_MONITOR, PER_MONITOR, PER_MONITOR],
  );
  const updates = await feed.messages
    .waitFor(
      () => feed.messages.items.filter((m) => m.type === "update").length >= 3 * PER_MONITOR,
      "every update on the feed",
      DEADLINE_MS,
    )
    .then(() => feed.messages.items.filter((m): m is Update => m.type === "update"));
  t.deepEqual(
    updates.map((u) => u.seq),
    updates.map((_, i) => i + 1),
    "publisher sequence without gaps",
  );
  for (const ids of acked) {
    const origin = ids[0]!.split(":")[0]!;
    const onFeed = updates
      .map((u) => (JSON.parse(u.payload.toString()) as { id: string }).id)
      .filter((id) => id.startsWith(`${origin}:`));
    t.deepEqual(onFeed, ids, "one origin's events in the order it sent them");
  }

  await publisher.restart();
  t.is(publisher.running.store.activeCount(), 3 * PER_MONITOR, "every acknowledged ban survived the restart");
});
