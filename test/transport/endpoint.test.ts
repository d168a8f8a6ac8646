import test from "ava";
import * as zmq from "zeromq";
import { F2bzError } from "../../src/errors.js";
import { BoundEndpoint } from "../../src/transport/endpoint.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import {
  closing,
  EventLog,
  FAST_RECONNECT,
  identity,
  Recorder,
  startServer,
  staticRegistry,
  tempDir,
} from "./helpers.js";

test("a `*` port is resolved once; a rebind replaces the socket at the same concrete address", async (t) => {
  const created: zmq.Router[] = [];
  const endpoint = await BoundEndpoint.open(() => {
    const socket = new zmq.Router({ linger: 0 });
    created.push(socket);
    return socket;
  }, "tcp://127.0.0.1:*");
  t.teardown(() => endpoint.close());
  t.regex(endpoint.address, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  const yielded: zmq.Router[] = [];
  const iteration = (async () => {
    for await (const socket of endpoint.sockets()) yielded.push(socket);
  })();

  await endpoint.rebind();
  await endpoint.rebind();
  t.is(endpoint.generation, 2);
  t.is(created.length, 3);
  t.is(endpoint.socket, created[2]!);
  t.true(created[0]!.closed && created[1]!.closed && !created[2]!.closed);
  t.is(created[2]!.lastEndpoint, endpoint.address);

  endpoint.close();
  endpoint.close(); // idempotent
  await iteration;
  t.true(created[2]!.closed);
  t.is(yielded.at(-1), created[2]);
  await endpoint.rebind(); // after close: nothing to do
  t.is(created.length, 3);
});

test("an ipc endpoint can be re-bound as well and stays reachable at its path", async (t) => {
  const dir = await tempDir(t);
  const endpoint = await BoundEndpoint.open(() => new zmq.Router({ linger: 0 }), `ipc://${dir}/feed.sock`);
  t.teardown(() => endpoint.close());
  const received = new Recorder<string>();
  void (async () => {
    for await (const socket of endpoint.sockets()) {
      for await (const [, body] of socket) received.record(body!.toString());
    }
  })();
  await endpoint.rebind();
  const client = closing(t, new zmq.Dealer({ linger: 0 }));
  client.connect(endpoint.address);
  await client.send("over ipc");
  await received.waitFor((m) => m === "over ipc", "a message after the rebind");
  t.is(endpoint.address, `ipc://${dir}/feed.sock`);
});

test("binding a port that is taken fails with BIND_FAILED and closes the socket", async (t) => {
  const holder = await BoundEndpoint.open(() => new zmq.Router({ linger: 0 }), "tcp://127.0.0.1:*");
  t.teardown(() => holder.close());
  let socket: zmq.Router | undefined;
  const error = await t.throwsAsync(
    BoundEndpoint.open(() => {
      socket = new zmq.Router({ linger: 0 });
      return socket;
    }, holder.address),
  );
  t.true(error instanceof F2bzError && error.code === "BIND_FAILED");
  t.regex(error!.message, /EADDRINUSE/);
  t.true(socket?.closed);
});

test("a failing replacement leaves the endpoint serving on its current socket", async (t) => {
  let calls = 0;
  const endpoint = await BoundEndpoint.open(() => {
    if (++calls > 1) throw new Error("no more sockets");
    return new zmq.Router({ linger: 0 });
  }, "tcp://127.0.0.1:*");
  t.teardown(() => endpoint.close());
  await t.throwsAsync(endpoint.rebind(), { message: "no more sockets" });
  t.false(endpoint.socket.closed);
  t.false(endpoint.closed);
});

test("a rebind drops live peers, which reconnect by themselves and get through again", async (t) => {
  const node = await identity("web1");
  const server = await startServer(t, "router", {
    domain: "feed",
    registry: staticRegistry([{ domain: "feed", id: node }]),
  });
  // One receive loop per socket generation, as a daemon runs it.
  const received = new Recorder<string>();
  void (async () => {
    for await (const socket of server.endpoint.sockets()) {
      for await (const [, body] of socket) received.record(body!.toString());
    }
  })();
  const client = closing(
    t,
    createClientSocket("dealer", {
      identity: node,
      serverKey: server.identity.curvePublic,
      ...FAST_RECONNECT,
    }),
  );
  const events = new EventLog(client);
  client.connect(server.endpoint.address);
  await client.send("before");
  await received.waitFor((m) => m === "before", "the first message");

  await server.endpoint.rebind();
  await events.waitFor((e) => e.type === "disconnect", "the client to be dropped");
  const handshakes = () => events.items.filter((e) => e.type === "handshake").length;
  await events.waitFor(() => handshakes() === 2, "a second handshake");
  await client.send("after");
  await received.waitFor((m) => m === "after", "a message on the new socket");
  t.is(server.zap.metrics.get("zap_allowed_total"), 2);
});
