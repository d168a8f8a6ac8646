import test, { type ExecutionContext } from "ava";
import type * as zmq from "zeromq";
import { Metrics } from "../../src/metrics/registry.js";
import {
  decodeSnapshotReply,
  encodeCredit,
  encodeSnapshotRequest,
  MAX_CHUNK_BYTES,
  MAX_CHUNK_ENTRIES,
  SNAPSHOT_WINDOW,
  type SnapshotReply,
} from "../../src/protocol/snapshot.js";
import { serialSender } from "../../src/publisher/snapshot-server.js";
import { PublisherReceiver } from "../../src/subscriber/receiver.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import { waitFor } from "../harness/wait.js";
import { type TestCluster, type TestNode, testCluster, testLogger } from "../helpers/cluster.js";
import { Recorder } from "../transport/helpers.js";
import { fillPublisherState } from "./fill.js";
import {
  authorized,
  DEADLINE_MS,
  FAST_RECONNECT,
  feedClient,
  type Reachable,
  sign,
  startTestPublisher,
  submitter,
  type TestPublisher,
} from "./helpers.js";

/**
 * Snapshots of a large active set, streamed (issue 10, findings 5 and 6): a joining subscriber gets
 * all of it, the publisher keeps serving everything else meanwhile, a peer gets one stream at a
 * time and `busy` beyond it, and one peer's flood of requests leaves the others served.
 */

/** One snapshot client on its own DEALER, recording what arrives; credit is granted on command. */
class SnapshotClient {
  readonly replies = new Recorder<SnapshotReply>();
  readonly entries: { payload: Buffer; signature: Buffer }[] = [];
  private granting = false;
  private withheld = 0;
  private readonly send: (frames: Buffer[]) => Promise<void>;

  constructor(socket: zmq.Dealer, options: { grant: boolean; order?: string[] }) {
    this.granting = options.grant;
    this.send = serialSender(socket);
    void this.read(socket, options.order);
  }

  private async read(socket: zmq.Dealer, order: string[] | undefined): Promise<void> {
    for await (const frames of socket) {
      const reply = decodeSnapshotReply(frames);
      if (!reply.ok) throw new Error(`malformed snapshot reply (${reply.reason})`);
      order?.push(reply.message.type);
      if (reply.message.type === "chunk") {
        this.entries.push(...reply.message.entries);
        if (this.granting) void this.send(encodeCredit());
        else this.withheld++;
      }
      this.replies.record(reply.message);
    }
  }

  static open(
    t: ExecutionContext,
    node: TestNode,
    publisher: Reachable,
    options: { grant: boolean; order?: string[] },
  ) {
    const socket = createClientSocket("dealer", {
      identity: node.identity,
      serverKey: publisher.node.identity.curvePublic,
      maxMessageSize: MAX_CHUNK_BYTES + 64,
      ...FAST_RECONNECT,
    });
    t.teardown(() => socket.close());
    socket.connect(publisher.running.endpoints.snapshot);
    return new SnapshotClient(socket, options);
  }

  request(): Promise<void> {
    return this.send(encodeSnapshotRequest());
  }

  /** Grants the credit held back so far, and every credit from now on. */
  grant(): void {
    this.granting = true;
    for (; this.withheld > 0; this.withheld--) void this.send(encodeCredit());
  }

  end(ms = DEADLINE_MS): Promise<Extract<SnapshotReply, { type: "end" }>> {
    return this.replies.waitFor((r) => r.type === "end", "the snapshot's end marker", ms) as Promise<
      Extract<SnapshotReply, { type: "end" }>
    >;
  }

  count(type: SnapshotReply["type"]): number {
    return this.replies.items.filter((r) => r.type === type).length;
  }
}

async function filledPublisher(
  t: ExecutionContext,
  count: number,
): Promise<{
  cluster: TestCluster;
  publisher: TestPublisher;
  web1: TestNode;
  sub1: TestNode;
  sub2: TestNode;
}> {
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const [sub1, sub2] = await authorized(cluster, "subscriber", "sub1", "sub2");
  const pub = await cluster.node("pub");
  fillPublisherState(pub.stateDir, web1!.identity, count);
  const publisher = await startTestPublisher(t, cluster);
  return { cluster, publisher, web1: web1!, sub1: sub1!, sub2: sub2! };
}

// Serial: filling 250,000 signed bans blocks this process's event loop for a while.
test.serial(
  "a subscriber joining a publisher with 250,000 active bans loads them all, each frame within its timeout",
  async (t) => {
    t.timeout(300_000);
    const count = 250_000;
    const { publisher, sub1 } = await filledPublisher(t, count);
    const metrics = new Metrics("subscriber");
    const seen = new Set<string>();
    const saved: number[] = [];
    // The subscriber's own receiver with its default per-frame timeout (5 s); applying is counting.
    const receiver = new PublisherReceiver({
      feed: publisher.running.endpoints.feed,
      snapshot: publisher.running.endpoints.snapshot,
      serverKey: publisher.node.identity.curvePublic,
      identity: sub1.identity,
      lastSeq: undefined,
      saveSeq: (seq) => saved.push(seq),
      onEvent: async (payload, _signature, source) => {
        if (source === "snapshot") seen.add(payload.toString("latin1"));
      },
      logger: testLogger(),
      metrics,
    });
    t.teardown(() => receiver.close());
    receiver.start();
    // Before: the reply was built in one blocking turn (seconds, the whole set in memory) before
    // its first frame left, past the subscriber's frame timeout: it retried for ever.
    await waitFor(
      () =>
        metrics.get("snapshot_loads_total", { result: "loaded" }) +
          metrics.get("snapshot_loads_total", { result: "failed" }) >
        0
          ? true
          : undefined,
      {
        timeoutMs: 240_000,
        what: "the snapshot to load or fail",
      },
    );
    t.is(metrics.get("snapshot_loads_total", { result: "failed" }), 0, "no attempt timed out");
    t.is(metrics.get("snapshot_loads_total", { result: "loaded" }), 1);
    t.is(seen.size, count, "every ban, none twice");
    t.deepEqual(saved, [count]);
    t.is(publisher.running.metrics.get("snapshots_total", { result: "served" }), 1);
  },
);

test.serial(
  "while a snapshot streams, a ban submitted meanwhile is acknowledged and published before the snapshot ends",
  async (t) => {
    // More chunks than one window: the rest is sent only as the client grants credit.
    const count = (SNAPSHOT_WINDOW + 2) * MAX_CHUNK_ENTRIES;
    const { publisher, web1, sub1, sub2 } = await filledPublisher(t, count);
    const feed = feedClient(t, sub2, publisher);
    await feed.ready;
    const monitor = submitter(t, web1, publisher);
    const order: string[] = [];
    const client = SnapshotClient.open(t, sub1, publisher, { grant: false, order });
    await client.request();
    await client.replies.waitFor((r) => r.type === "chunk", "the first chunk");

    const ban = await sign(web1.identity, { seq: count + 1, ip: "198.51.100.1" });
    const reply = await monitor.submit(ban);
    order.push(reply.type);
    const update = await feed.messages.waitFor(
      (m) => m.type === "update" && m.payload.equals(ban.payload),
      "the live ban on the feed",
    );
    order.push("update");
    client.grant();
    const end = await client.end();

    t.is(reply.type, "ack");
    // Before: the snapshot was built and sent in one turn, its end marker ahead of the ack.
    t.true(order.indexOf("ack") < order.indexOf("end"), order.join(" "));
    t.true(order.indexOf("update") < order.indexOf("end"), order.join(" "));
    t.is(end.count, count);
    t.true(update.seq > end.seq, "the snapshot is the state from before the ban, the update after it");
  },
);

test.serial("a second snapshot request from the same peer while its first streams gets busy", async (t) => {
  const count = (SNAPSHOT_WINDOW + 2) * MAX_CHUNK_ENTRIES;
  const { publisher, sub1 } = await filledPublisher(t, count);
  const client = SnapshotClient.open(t, sub1, publisher, { grant: false });
  await client.request();
  await client.replies.waitFor((r) => r.type === "chunk", "the first chunk");
  await client.request();
  const busy = await client.replies.waitFor((r) => r.type === "busy", "a busy reply");
  t.true(busy.type === "busy" && busy.retryAfterMs > 0);

  client.grant();
  const end = await client.end();
  t.is(end.count, count, "the first stream carries on, whole");
  t.is(client.count("end"), 1, "and only one was started");
  t.is(publisher.running.metrics.get("snapshot_requests_busy_total", { limit: "in-flight" }), 1);
});

test.serial("one peer hammering snapshot requests does not stop another peer's snapshot", async (t) => {
  // Small: each snapshot is cheap, so a flood of them is fast enough to keep any shared bucket empty.
  const count = 50;
  const { publisher, sub1, sub2 } = await filledPublisher(t, count);
  const hammer = SnapshotClient.open(t, sub1, publisher, { grant: false });
  for (let i = 0; i < 100; i++) await hammer.request();
  await hammer.replies.waitFor((r) => r.type === "chunk", "the hammering peer's first chunk");

  const other = SnapshotClient.open(t, sub2, publisher, { grant: true });
  await other.request();
  // The flood goes on while the other peer's request is in flight.
  for (let i = 0; i < 1_000; i++) await hammer.request();
  // Before: one global bucket; the flood kept it empty and this request was dropped in silence.
  const end = await other.end();
  t.is(end.count, count);
  t.is(other.entries.length, count);
  t.is(other.count("busy"), 0);
  t.true(hammer.count("busy") > 0, "the hammering peer is told to wait");
});
