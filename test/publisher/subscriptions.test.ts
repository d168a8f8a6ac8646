import type { ExecutionContext } from "ava";
import test from "ava";
import * as zmq from "zeromq";
import { z85Encode } from "../../src/keys/z85.js";
import { TOPIC_UPDATE } from "../../src/protocol/feed.js";
import { waitFor } from "../harness/wait.js";
import { type TestNode, testCluster } from "../helpers/cluster.js";
import { EventLog, Inbox } from "../transport/helpers.js";
import { authorized, DEADLINE_MS, feedClient, startTestPublisher, type TestPublisher } from "./helpers.js";

/**
 * Issue 10, finding 4: the feed took any subscription from any authorized subscriber, of any size
 * and number, and kept it after the peer left. The clients here are raw XSUB sockets with the
 * subscriber's CURVE key, as an independent (hostile) client would be, not f2bz's own receiver.
 */
function rawSubscriber(t: ExecutionContext, node: TestNode, publisher: TestPublisher) {
  const socket = new zmq.XSubscriber({
    curveServerKey: z85Encode(publisher.node.identity.curvePublic),
    curvePublicKey: z85Encode(node.identity.curvePublic),
    curveSecretKey: z85Encode(node.identity.curveSecret),
    reconnectInterval: 100,
    linger: 0,
  });
  t.teardown(() => socket.close());
  const events = new EventLog(socket);
  const inbox = new Inbox(socket);
  socket.connect(publisher.running.endpoints.feed);
  return { socket, events, inbox };
}

const subscription = (kind: number, body: Buffer | string) =>
  Buffer.concat([Buffer.from([kind]), Buffer.from(body)]);

test("subscriptions of 60 kB end the sender's connection and are never stored", async (t) => {
  const cluster = await testCluster(t);
  const [mallory, honest] = await authorized(cluster, "subscriber", "mallory", "honest");
  const publisher = await startTestPublisher(t, cluster);
  const hostile = rawSubscriber(t, mallory!, publisher);
  await hostile.events.handshake(DEADLINE_MS);

  for (let i = 0; i < 100; i++) {
    // A fresh buffer per send: zeromq.js may send without copying.
    const body = Buffer.alloc(60_000, 0x61 + (i % 26));
    await hostile.socket.send(subscription(1, Buffer.concat([Buffer.from(TOPIC_UPDATE), body])));
  }
  // The feed's frame limit makes libzmq drop the peer at the first such frame, before any of it
  // reaches a subscription trie.
  await hostile.events.waitFor((e) => e.type === "disconnect", "the hostile peer's disconnect", DEADLINE_MS);
  t.is(publisher.running.metrics.get("feed_subscriptions_total", { action: "subscribe" }), 0);

  const feed = feedClient(t, honest!, publisher);
  t.like(await feed.ready, { type: "heartbeat" });
  t.is(publisher.running.metrics.get("feed_subscriptions_total", { action: "subscribe" }), 1);
});

test("a subscription to anything but the feed's topic is dropped, counted, and receives nothing", async (t) => {
  const cluster = await testCluster(t);
  const [eve, honest] = await authorized(cluster, "subscriber", "eve", "honest");
  const publisher = await startTestPublisher(t, cluster);
  const hostile = rawSubscriber(t, eve!, publisher);
  await hostile.events.handshake(DEADLINE_MS);

  // Everything, a shorter and a longer prefix of the feed's messages, then two malformed ones.
  for (const body of ["", "f2bz", `${TOPIC_UPDATE}/heartbeat`])
    await hostile.socket.send(subscription(1, body));
  await hostile.socket.send(subscription(2, TOPIC_UPDATE));
  await hostile.socket.send(Buffer.alloc(0));
  const metrics = publisher.running.metrics;
  await waitFor(
    () =>
      metrics.get("feed_subscriptions_dropped_total", { reason: "topic" }) === 3 &&
      metrics.get("feed_subscriptions_dropped_total", { reason: "malformed" }) === 2
        ? true
        : undefined,
    { timeoutMs: DEADLINE_MS, what: "the gate to drop five subscriptions" },
  );

  // The honest subscriber sees heartbeats come and go that the hostile one, had any of its
  // subscriptions been applied, would have received too.
  const feed = feedClient(t, honest!, publisher);
  await feed.ready;
  const first = feed.messages.items.length;
  await waitFor(() => (feed.messages.items.length >= first + 2 ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "two more heartbeats",
  });
  t.deepEqual(hostile.inbox.items, []);
  t.is(metrics.get("feed_subscriptions_total", { action: "subscribe" }), 1);
  t.false(
    hostile.events.types().includes("disconnect"),
    "small wrong subscriptions do not cost the peer its connection",
  );
});
