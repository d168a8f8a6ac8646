import test from "ava";
import * as zmq from "zeromq";
import { F2bzError } from "../../src/errors.js";
import {
  assertCurve,
  createClientSocket,
  createServerSocket,
  createTransportContext,
  needsIpv6,
  type ServerKind,
  type ZapDomain,
} from "../../src/transport/sockets.js";
import { identity } from "./helpers.js";

const code = (error: unknown) => (error instanceof F2bzError ? error.code : undefined);

test("CURVE is available here; without it the factory refuses with CURVE_UNAVAILABLE", (t) => {
  t.true(zmq.capability.curve);
  t.notThrows(() => assertCurve());
  t.is(code(t.throws(() => assertCurve({ curve: false }))), "CURVE_UNAVAILABLE");
  t.is(code(t.throws(() => assertCurve({}))), "CURVE_UNAVAILABLE");
});

for (const kind of ["reply", "router", "publisher"] as const satisfies readonly ServerKind[]) {
  test(`a ${kind} server socket has every security option set at construction`, async (t) => {
    const id = await identity("publisher");
    const socket = createServerSocket(kind, {
      context: createTransportContext(),
      identity: id,
      domain: "feed",
      ...(kind === "publisher" ? { sendHighWaterMark: 500 } : {}),
    });
    t.teardown(() => socket.close());
    // zeromq.js cannot read CURVE keys back (EINVAL); the handshake tests prove they are right.
    t.like(socket, {
      securityMechanism: "curve",
      curveServer: true,
      zapDomain: "feed",
      zapEnforceDomain: true,
      maxMessageSize: 65_536,
      handshakeInterval: 5_000,
      heartbeatInterval: 10_000,
      heartbeatTimeout: 30_000,
      heartbeatTimeToLive: 30_000,
      linger: 0,
      ipv6: false,
    });
    if (kind === "publisher") t.is((socket as zmq.Publisher).sendHighWaterMark, 500);
  });
}

test("IPv6 is needed for bracketed hosts and for `*`, not for IPv4 addresses", (t) => {
  t.true(needsIpv6("tcp://[::]:5678"));
  t.true(needsIpv6("tcp://[2001:db8::1]:*"));
  t.true(needsIpv6("tcp://*:5678"));
  t.false(needsIpv6("tcp://0.0.0.0:5678"));
  t.false(needsIpv6("tcp://127.0.0.1:*"));
  t.false(needsIpv6("tcp://pub1.example.net:5678"));
  t.false(needsIpv6("ipc:///run/f2bz/feed"));
});

test("a server socket without a valid ZAP domain is refused", async (t) => {
  const id = await identity("publisher");
  const context = createTransportContext();
  for (const domain of ["", undefined, "admin", "SUBMIT"]) {
    const error = t.throws(() =>
      createServerSocket("publisher", { context, identity: id, domain: domain as ZapDomain }),
    );
    t.is(code(error), "INTERNAL");
    t.regex(error!.message, /^zap domain '.*' is invalid, expected 'submit' or 'feed'$/);
  }
});

test("keys of the wrong length are refused before libzmq sees them", async (t) => {
  const id = await identity("x");
  const short = { curvePublic: id.curvePublic, curveSecret: id.curveSecret.subarray(0, 31) };
  t.is(
    code(
      t.throws(() =>
        createServerSocket("reply", { context: createTransportContext(), identity: short, domain: "submit" }),
      ),
    ),
    "KEY_INVALID",
  );
  t.is(
    code(t.throws(() => createClientSocket("request", { identity: id, serverKey: new Uint8Array(123) }))),
    "KEY_INVALID",
  );
});

for (const kind of ["request", "dealer", "subscriber"] as const) {
  test(`a ${kind} client socket pins the server key and bounds frames, handshakes and reconnects`, async (t) => {
    const id = await identity("web1");
    const server = await identity("publisher");
    const socket = createClientSocket(kind, { identity: id, serverKey: server.curvePublic });
    t.teardown(() => socket.close());
    t.like(socket, {
      securityMechanism: "curve",
      curveServer: false,
      maxMessageSize: 65_536,
      handshakeInterval: 5_000,
      heartbeatInterval: 10_000,
      heartbeatTimeout: 30_000,
      reconnectInterval: 1_000,
      reconnectMaxInterval: 30_000,
      linger: 0,
    });
  });
}
