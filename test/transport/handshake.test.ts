import net from "node:net";
import test from "ava";
import * as zmq from "zeromq";
import { BoundEndpoint } from "../../src/transport/endpoint.js";
import {
  createClientSocket,
  createServerSocket,
  createTransportContext,
} from "../../src/transport/sockets.js";
import { hasIpv6Loopback, testWhen } from "../helpers/skip.js";
import {
  closing,
  DEADLINE_MS,
  EventLog,
  FAST_RECONNECT,
  Inbox,
  identity,
  startServer,
  staticRegistry,
  within,
} from "./helpers.js";

/**
 * libzmq's own security cases (tests/test_security_curve.cpp, test_security_zap.cpp), replayed on
 * f2bz's sockets: the factory's options, our ZAP handler, real CURVE keys, tcp on loopback.
 */

test("valid keys pass: the request is delivered and answered, both sides report the handshake", async (t) => {
  const monitor = await identity("web1");
  const server = await startServer(t, "reply", {
    domain: "submit",
    registry: staticRegistry([{ domain: "submit", id: monitor }]),
  });
  const requests = new Inbox(server.endpoint.socket, ([m]) => ["ack", m!]);
  const client = closing(
    t,
    createClientSocket("request", { identity: monitor, serverKey: server.identity.curvePublic }),
  );
  const clientEvents = new EventLog(client);
  client.connect(server.endpoint.address);
  await client.send("event-1");
  const [ack, echoed] = await within(client.receive(), "the reply");
  t.is(ack?.toString(), "ack");
  t.is(echoed?.toString(), "event-1");
  t.deepEqual(requests.texts(), ["event-1"]);
  await server.events.handshake();
  await clientEvents.handshake();
  t.is(server.zap.metrics.get("zap_allowed_total"), 1);
});

test("valid keys pass on publisher/subscriber and router/dealer", async (t) => {
  const node = await identity("web2");
  const registry = staticRegistry([{ domain: "feed", id: node }]);
  const feed = await startServer(t, "publisher", { domain: "feed", registry });
  const sub = closing(
    t,
    createClientSocket("subscriber", { identity: node, serverKey: feed.identity.curvePublic }),
  );
  sub.subscribe();
  const updates = new Inbox(sub);
  sub.connect(feed.endpoint.address);
  await feed.events.handshake();
  // PUB drops until the subscription has arrived: publish until the first message lands.
  const ticker = setInterval(() => {
    if (!feed.endpoint.closed) void feed.endpoint.socket.send("update").catch(() => {});
  }, 20);
  t.teardown(() => clearInterval(ticker));
  await updates.waitFor((m) => m[0]?.toString() === "update", "an update");

  const snapshot = await startServer(t, "router", { domain: "feed", registry });
  new Inbox(snapshot.endpoint.socket, ([routingId, m]) => [routingId!, `snapshot for ${m}`]);
  const dealer = closing(
    t,
    createClientSocket("dealer", { identity: node, serverKey: snapshot.identity.curvePublic }),
  );
  dealer.connect(snapshot.endpoint.address);
  await dealer.send("hello");
  const [reply] = await within(dealer.receive(), "the snapshot reply");
  t.is(reply?.toString(), "snapshot for hello");
});

testWhen(
  test,
  hasIpv6Loopback(),
  "no IPv6 loopback (::1) on this machine: the IPv6 handshake test",
)("valid keys pass over IPv6, and ZAP sees the IPv6 peer address", async (t) => {
  const node = await identity("web6");
  const seen: string[] = [];
  const stranger = await identity("stranger");
  const server = await startServer(t, "router", {
    domain: "submit",
    registry: staticRegistry([{ domain: "submit", id: node }]),
    address: "tcp://[::1]:*",
    ipv6: true,
    onUnknown: (_domain, address) => seen.push(address),
  });
  t.regex(server.endpoint.address, /^tcp:\/\/\[::1\]:\d+$/);
  const inbox = new Inbox(server.endpoint.socket);
  const client = closing(
    t,
    createClientSocket("dealer", { identity: node, serverKey: server.identity.curvePublic }),
  );
  client.connect(server.endpoint.address);
  await client.send("over ipv6");
  await inbox.waitFor((m) => m[1]?.toString() === "over ipv6", "a message over IPv6");
  const refused = closing(
    t,
    createClientSocket("dealer", { identity: stranger, serverKey: server.identity.curvePublic }),
  );
  const events = new EventLog(refused);
  refused.connect(server.endpoint.address);
  await events.authFailure(400);
  t.deepEqual(seen, ["::1"]);
});

test("a wrong server key never delivers and never reaches ZAP", async (t) => {
  const monitor = await identity("web1");
  const impostor = await identity("not-the-publisher");
  const server = await startServer(t, "router", {
    domain: "submit",
    registry: staticRegistry([{ domain: "submit", id: monitor }]),
  });
  const inbox = new Inbox(server.endpoint.socket);
  const client = closing(
    t,
    createClientSocket("dealer", {
      identity: monitor,
      serverKey: impostor.curvePublic,
      ...FAST_RECONNECT,
    }),
  );
  client.connect(server.endpoint.address);
  void client.send("event").catch(() => {});
  // The server cannot open the client's HELLO box: it fails in the CURVE layer, before ZAP.
  await server.events.protocolError("ERR_ZMTP_CRYPTOGRAPHIC");
  // The client keeps retrying (with back-off); no attempt gets further.
  const failures = () => server.events.items.filter((e) => e.type === "handshake:error:protocol").length;
  await server.events.waitFor(() => failures() >= 2, "a second failed attempt");
  t.false(server.events.types().includes("handshake"));
  t.deepEqual(inbox.items, []);
  t.is(server.zap.metrics.get("zap_requests_total"), 0);
});

test("an unknown client key gets 400 on both sides and is reported as unknown", async (t) => {
  const known = await identity("web1");
  const stranger = await identity("stranger");
  const unknown: { domain: string; address: string; key: Uint8Array }[] = [];
  const server = await startServer(t, "reply", {
    domain: "submit",
    registry: staticRegistry([{ domain: "submit", id: known }]),
    onUnknown: (domain, address, key) => unknown.push({ domain, address, key }),
  });
  const inbox = new Inbox(server.endpoint.socket, () => ["ack"]);
  const client = closing(
    t,
    createClientSocket("request", { identity: stranger, serverKey: server.identity.curvePublic }),
  );
  const clientEvents = new EventLog(client);
  client.connect(server.endpoint.address);
  void client.send("event").catch(() => {});
  await server.events.authFailure(400);
  await clientEvents.authFailure(400);
  t.deepEqual(inbox.items, []);
  t.is(server.zap.metrics.get("zap_denied_total", { reason: "unknown" }), 1);
  t.is(unknown.length, 1);
  t.is(unknown[0]?.domain, "submit");
  t.is(unknown[0]?.address, "127.0.0.1");
  t.deepEqual(Buffer.from(unknown[0]!.key), Buffer.from(stranger.curvePublic));
});

for (const [mechanism, options] of [
  ["NULL", {}],
  ["PLAIN", { plainUsername: "admin", plainPassword: "secret" }],
] as const) {
  test(`a ${mechanism} client is refused with a mechanism mismatch, without a ZAP request`, async (t) => {
    const server = await startServer(t, "router", { domain: "submit", registry: staticRegistry([]) });
    const inbox = new Inbox(server.endpoint.socket);
    const client = closing(t, new zmq.Dealer({ linger: 0, ...options }));
    const clientEvents = new EventLog(client);
    client.connect(server.endpoint.address);
    void client.send("event").catch(() => {});
    await clientEvents.protocolError("ERR_ZMTP_MECHANISM_MISMATCH");
    // The server sees the same mismatch, or EPIPE when the client hung up first (a race of greetings).
    await server.events.waitFor((e) => e.type.startsWith("handshake:error:"), "a failed handshake");
    t.false(server.events.types().includes("handshake"));
    t.deepEqual(inbox.items, []);
    t.is(server.zap.metrics.get("zap_requests_total"), 0);
  });
}

test("a subscriber key cannot submit and a monitor key cannot receive the feed", async (t) => {
  const monitor = await identity("mon");
  const subscriber = await identity("sub");
  const registry = staticRegistry([
    { domain: "submit", id: monitor },
    { domain: "feed", id: subscriber },
  ]);
  const submit = await startServer(t, "reply", { domain: "submit", registry });
  const feed = await startServer(t, "publisher", { domain: "feed", registry });

  const wrongSubmitter = closing(
    t,
    createClientSocket("request", { identity: subscriber, serverKey: submit.identity.curvePublic }),
  );
  const submitterEvents = new EventLog(wrongSubmitter);
  wrongSubmitter.connect(submit.endpoint.address);
  void wrongSubmitter.send("forged").catch(() => {});

  const wrongReader = closing(
    t,
    createClientSocket("subscriber", { identity: monitor, serverKey: feed.identity.curvePublic }),
  );
  wrongReader.subscribe();
  const readerEvents = new EventLog(wrongReader);
  wrongReader.connect(feed.endpoint.address);

  await submit.events.authFailure(400);
  await submitterEvents.authFailure(400);
  await feed.events.authFailure(400);
  await readerEvents.authFailure(400);
  t.is(submit.zap.metrics.get("zap_denied_total", { reason: "unknown" }), 1);
  t.is(feed.zap.metrics.get("zap_denied_total", { reason: "unknown" }), 1);
  t.is(submit.zap.metrics.get("zap_allowed_total") + feed.zap.metrics.get("zap_allowed_total"), 0);
});

test("without a ZAP handler an enforcing server admits nobody", async (t) => {
  const server = await identity("publisher");
  const client = await identity("web1");
  const context = createTransportContext(); // no handler bound in this context
  let events!: EventLog;
  const endpoint = await BoundEndpoint.open(() => {
    const socket = createServerSocket("router", { context, identity: server, domain: "submit" });
    events = new EventLog(socket);
    return socket;
  }, "tcp://127.0.0.1:*");
  t.teardown(() => endpoint.close());
  const inbox = new Inbox(endpoint.socket);
  const dealer = closing(
    t,
    createClientSocket("dealer", { identity: client, serverKey: server.curvePublic, ...FAST_RECONNECT }),
  );
  dealer.connect(endpoint.address);
  void dealer.send("event").catch(() => {});
  // libzmq answers a missing handler with EFAULT when the domain is enforced (fails closed).
  await events.waitFor((e) => e.type === "handshake:error:other", "handshake:error:other");
  t.false(events.types().includes("handshake"));
  t.deepEqual(inbox.items, []);
});

test("a frame over maxMessageSize is dropped with the connection; the server keeps serving", async (t) => {
  const node = await identity("web1");
  const server = await startServer(t, "router", {
    domain: "feed",
    registry: staticRegistry([{ domain: "feed", id: node }]),
    maxMessageSize: 1024,
  });
  const inbox = new Inbox(server.endpoint.socket);
  const client = closing(
    t,
    createClientSocket("dealer", {
      identity: node,
      serverKey: server.identity.curvePublic,
      maxMessageSize: 1 << 20,
      ...FAST_RECONNECT,
    }),
  );
  client.connect(server.endpoint.address);
  await server.events.handshake();
  await client.send(Buffer.alloc(1025, 0x41));
  await server.events.waitFor((e) => e.type === "disconnect", "the oversize sender to be disconnected");
  // A message sent before the client noticed the disconnect would go down the dying pipe: send once
  // it is back (a second handshake), which is what "the server keeps serving" means.
  const handshakes = () => server.events.items.filter((e) => e.type === "handshake").length;
  await server.events.waitFor((e) => e.type === "handshake" && handshakes() >= 2, "the client back");
  await client.send("small");
  const [, small] = await inbox.waitFor((m) => m[1]?.toString() === "small", "the next small message");
  t.is(small?.length, 5);
  t.deepEqual(
    inbox.items.map((m) => m[1]?.length),
    [5],
  );
});

test("raw garbage on the TCP port changes nothing", async (t) => {
  const node = await identity("web1");
  const server = await startServer(t, "router", {
    domain: "submit",
    registry: staticRegistry([{ domain: "submit", id: node }]),
  });
  const inbox = new Inbox(server.endpoint.socket);
  const port = Number(new URL(server.endpoint.address).port);
  const payloads = [
    // libzmq's test #8: a ZMTP 1.0 greeting and an identity frame, then a message.
    Buffer.concat([Buffer.from([0x01, 0x00]), Buffer.from("\x08\x00sneaky\0", "latin1")]),
    Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 131 + 7) & 0xff)),
  ];
  for (const payload of payloads) {
    await new Promise<void>((resolve, reject) => {
      const raw = net.connect(port, "127.0.0.1", () => raw.end(payload));
      const timer = setTimeout(() => {
        raw.destroy();
        reject(new Error(`timed out after ${DEADLINE_MS} ms waiting for the server to hang up`));
      }, DEADLINE_MS);
      raw.on("error", () => {});
      raw.resume();
      raw.on("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  t.is(server.zap.metrics.get("zap_requests_total"), 0);
  const client = closing(
    t,
    createClientSocket("dealer", { identity: node, serverKey: server.identity.curvePublic }),
  );
  client.connect(server.endpoint.address);
  await client.send("still serving");
  await inbox.waitFor((m) => m[1]?.toString() === "still serving", "a valid client's message");
  t.deepEqual(
    inbox.items.map((m) => m[1]?.toString()),
    ["still serving"],
  );
});
