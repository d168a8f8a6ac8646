import test from "ava";
import * as zmq from "zeromq";
import { z85Encode } from "../../src/keys/z85.js";
import type { Metrics } from "../../src/metrics/registry.js";
import {
  decodeFeed,
  encodeExpire,
  encodeHeartbeat,
  encodeUpdate,
  MAX_FEED_FRAME_BYTES,
  TOPIC_UPDATE,
} from "../../src/protocol/feed.js";
import type { SignedEvent } from "../../src/protocol/signature.js";
import { decodeSnapshotRequest, encodeEnd } from "../../src/protocol/snapshot.js";
import { waitFor } from "../harness/wait.js";
import { ANY_PORT, testCluster } from "../helpers/cluster.js";
import { sign } from "../publisher/helpers.js";
import { startTestSubscriber } from "../subscriber/helpers.js";
import { DEADLINE_MS, MESSAGES, RSS_BOUND_BYTES } from "./helpers.js";
import { fuzzSeed, mutateFrames, rng, signedMalformed } from "./mutate.js";

const seed = fuzzSeed();
const replay = `F2BZ_FUZZ_SEED=${seed} npx ava test/fuzz/subscriber.test.ts`;
/** The subscriber's SUB takes frames up to MAX_FEED_FRAME_BYTES plus CURVE's framing (receiver.ts). */
const MAX_FRAME = MAX_FEED_FRAME_BYTES + 64 - 33;
const TOPIC = Buffer.from(TOPIC_UPDATE, "latin1");

/** What the subscriber counts per feed message it reads: a drop, or an accepted live update. */
function counted(metrics: Metrics): number {
  let sum = metrics.get("events_accepted_total", { source: "live" });
  for (const [name, value] of Object.entries(metrics.summary())) {
    if (name.startsWith("events_dropped_total{")) sum += value;
  }
  return sum;
}

test("fuzz subscriber: a fake publisher's mutated updates are each counted, the subscriber still applies a valid one", async (t) => {
  t.timeout(240_000);
  t.log(`seed ${seed} (${replay})`);
  const cluster = await testCluster(t);
  const pubNode = await cluster.node("pub");
  const origin = await cluster.node("mon");
  const subNode = await cluster.node("sub");

  // A fake publisher with the pinned key: a real CURVE PUB and a ROUTER that answers every
  // snapshot request with an empty snapshot at its current sequence.
  const curve = { curveServer: true, curveSecretKey: z85Encode(pubNode.identity.curveSecret) };
  const pub = new zmq.Publisher({ ...curve, sendHighWaterMark: 100_000 });
  const router = new zmq.Router(curve);
  t.teardown(() => {
    pub.close();
    router.close();
  });
  await pub.bind(ANY_PORT);
  await router.bind(ANY_PORT);
  let pubSeq = 0;
  let snapshotsServed = 0;
  void (async () => {
    for await (const [id, ...frames] of router) {
      if (!decodeSnapshotRequest(frames).ok || id === undefined) continue;
      snapshotsServed++;
      await router.send([id, ...encodeEnd(pubSeq, 0)]);
    }
  })().catch(() => {});

  const running = await startTestSubscriber(t, cluster, subNode, {
    publishers: [{ feed: pub.lastEndpoint, snapshot: router.lastEndpoint, key: pubNode.publicKey }],
    action: { type: "log" },
  });
  const metrics = running.metrics;
  // Connected and in step: a heartbeat at our sequence leads to a snapshot, then updates apply.
  await waitFor(
    async () => {
      await pub.send(encodeHeartbeat(pubSeq));
      return snapshotsServed > 0 && metrics.get("snapshot_loads_total", { result: "loaded" }) > 0
        ? true
        : undefined;
    },
    { timeoutMs: DEADLINE_MS, intervalMs: 100, what: "the subscriber to load a snapshot" },
  );
  const rssBefore = process.memoryUsage().rss;
  const countedBefore = counted(metrics);

  const r = rng(seed);
  const accepted: SignedEvent[] = [];
  let seq = 0;
  let expected = 0;
  const updateOf = (event: SignedEvent) => encodeUpdate(event.payload, event.signature, ++pubSeq);
  for (let i = 0; i < MESSAGES; i++) {
    const event = await sign(origin.identity, { seq: ++seq, ip: `192.0.2.${seq % 200}` });
    const fields = JSON.parse(event.payload.toString("utf8")) as Record<string, unknown>;
    let frames: Buffer[];
    const pick = r.int(20);
    if (pick < 10) {
      const base = r.pick([
        updateOf(event),
        encodeHeartbeat(pubSeq),
        encodeExpire({ jail: "sshd", ip: "192.0.2.1", id: event.event.id }, ++pubSeq),
      ]);
      frames = mutateFrames(r, base, MAX_FRAME);
    } else if (pick < 14) {
      const [, payload, signature] = await signedMalformed(r, origin.identity, fields);
      frames = encodeUpdate(payload!, signature!, ++pubSeq);
    } else if (pick === 14) {
      frames = encodeUpdate(event.payload, r.bytes(64), ++pubSeq);
    } else if (pick === 15 && accepted.length > 0) {
      const old = accepted[r.int(accepted.length)]!;
      frames = encodeUpdate(old.payload, old.signature, ++pubSeq);
    } else if (pick === 16) {
      const stale = await sign(origin.identity, {
        seq: ++seq,
        ip: "192.0.2.250",
        time: Date.now() - 86_400_000,
      });
      frames = updateOf(stale);
    } else {
      frames = updateOf(event);
      accepted.push(event);
    }
    // Only what the subscription prefix lets through reaches the subscriber; of that, every
    // message but a valid heartbeat or expiry is either a counted drop or an accepted update.
    const [topic] = frames;
    if (topic?.subarray(0, TOPIC.length).equals(TOPIC)) {
      const decoded = decodeFeed(frames);
      if (!decoded.ok || decoded.message.type === "update") expected++;
    }
    await pub.send(frames);
    // Flow control: PUB drops at the high-water mark; wait for the subscriber to catch up.
    if (i % 200 === 199) {
      await waitFor(() => (counted(metrics) - countedBefore >= expected ? true : undefined), {
        timeoutMs: DEADLINE_MS,
        what: `the subscriber to count ${expected} messages (seed ${seed})`,
      });
    }
  }
  await waitFor(() => (counted(metrics) - countedBefore >= expected ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: `the subscriber to count ${expected} messages (seed ${seed})`,
  }).catch(() => {});
  t.log(`${expected} of ${MESSAGES} messages reached the subscriber's checks`);
  const detail = () => `seed ${seed}; counters ${JSON.stringify(metrics.summary())}`;
  t.is(counted(metrics) - countedBefore, expected, `every message counted once; ${detail()}`);
  t.is(
    metrics.get("receive_failures_total", { stage: "receiver" }) +
      metrics.get("receive_failures_total", { stage: "event" }),
    0,
    detail(),
  );

  // Liveness: a fresh valid update, in sequence, is still accepted.
  const live = metrics.get("events_accepted_total", { source: "live" });
  const probe = await sign(origin.identity, { seq: ++seq, ip: "198.51.100.77" });
  await pub.send(updateOf(probe));
  await waitFor(() => (metrics.get("events_accepted_total", { source: "live" }) > live ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: `the probe to be accepted (seed ${seed})`,
  });
  const grown = process.memoryUsage().rss - rssBefore;
  t.true(grown < RSS_BOUND_BYTES, `rss grew ${grown} bytes; seed ${seed}`);
});
