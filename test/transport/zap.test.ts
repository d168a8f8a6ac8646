import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { z85Encode } from "../../src/keys/z85.js";
import { RateLimitedLog } from "../../src/toolkit/limited-log.js";
import { BoundEndpoint } from "../../src/transport/endpoint.js";
import {
  createClientSocket,
  createServerSocket,
  createTransportContext,
} from "../../src/transport/sockets.js";
import { decide, peerAddress, replyFrames, ZapHandler, type ZapRegistry } from "../../src/transport/zap.js";
import {
  captureLogger,
  closing,
  EventLog,
  identity,
  silentLogger,
  startServer,
  staticRegistry,
} from "./helpers.js";

/** A request as libzmq 4.3.5 sends it to a REP handler (seen: ["1.0","1","f2b","127.0.0.1","","CURVE",<32 B>]). */
function request(
  overrides: { [index: number]: Buffer | string } = {},
  extra: (Buffer | string)[] = [],
): Buffer[] {
  const frames: (Buffer | string)[] = ["1.0", "1", "submit", "192.0.2.7", "", "CURVE", Buffer.alloc(32, 7)];
  for (const [i, v] of Object.entries(overrides)) frames[Number(i)] = v;
  return [...frames, ...extra].map((f) => (typeof f === "string" ? Buffer.from(f, "latin1") : f));
}

const peer = { nodeId: "a".repeat(32), name: "web1" };
const allowAll: ZapRegistry = { lookup: () => peer };

test("a known key in its domain is allowed with the node id as user id", (t) => {
  const seen: [string, string][] = [];
  const decision = decide(request(), {
    lookup: (domain, key) => {
      seen.push([domain, Buffer.from(key).toString("hex")]);
      return peer;
    },
  });
  t.is(decision.status, "200");
  t.deepEqual(seen, [["submit", "07".repeat(32)]]);
  t.deepEqual(replyFrames(Buffer.from("1"), decision), [
    "1.0",
    Buffer.from("1"),
    "200",
    "OK",
    peer.nodeId,
    "",
  ]);
});

for (const [what, frames, reason] of [
  ["NULL mechanism", request({ 5: "NULL" }).slice(0, 6), "mechanism"],
  ["PLAIN mechanism", request({ 5: "PLAIN", 6: "admin" }, ["secret"]), "mechanism"],
  ["empty domain", request({ 2: "" }), "domain"],
  ["unknown domain", request({ 2: "admin" }), "domain"],
  ["wrong version", request({ 0: "2.0" }), "malformed"],
  ["too few frames", request().slice(0, 5), "malformed"],
  ["a 31-byte key", request({ 6: Buffer.alloc(31) }), "malformed"],
  ["two credential frames", request({}, [Buffer.alloc(32)]), "malformed"],
] as const) {
  test(`${what} is denied with 400 without asking the registry`, (t) => {
    const decision = decide(frames, {
      lookup: () => {
        t.fail("registry asked");
        return peer;
      },
    });
    t.is(decision.status, "400");
    t.is(decision.status !== "200" && decision.reason, reason);
    const reply = replyFrames(frames[1], decision);
    t.is(reply.length, 6);
    t.deepEqual(reply.slice(2), ["400", "denied", "", ""]);
  });
}

test("an unknown key is denied with 400; a revoked key is denied as revoked before lookup", (t) => {
  const unknown = decide(request(), { lookup: () => undefined });
  t.like(unknown, { status: "400", reason: "unknown", domain: "submit", address: "192.0.2.7" });
  const revoked = decide(request(), { ...allowAll, isRevoked: () => true });
  t.like(revoked, { status: "400", reason: "revoked" });
});

test("IPv4-mapped peer addresses are shown as IPv4; others are left alone", (t) => {
  t.is(peerAddress("::ffff:192.0.2.7"), "192.0.2.7");
  t.is(peerAddress("::FFFF:10.0.0.1"), "10.0.0.1");
  t.is(peerAddress("2001:db8::1"), "2001:db8::1");
  t.is(peerAddress("::ffff:192.0.2.7\n"), "::ffff:192.0.2.7\n");
  t.like(decide(request({ 3: "::ffff:198.51.100.2" }), { lookup: () => undefined }), {
    address: "198.51.100.2",
  });
});

test("a registry that throws gives 500, never 200", (t) => {
  const decision = decide(request(), {
    lookup: () => {
      throw new Error("boom");
    },
  });
  t.like(decision, { status: "500", reason: "error" });
  t.deepEqual(replyFrames(Buffer.from("1"), decision).slice(2), ["500", "internal error", "", ""]);
});

test("the reply echoes the request id unchanged and is six frames even without one", (t) => {
  const id = Buffer.from([0, 1, 2, 0xff]);
  t.is(replyFrames(id, decide(request({ 1: id }), allowAll))[1], id);
  t.deepEqual(replyFrames(undefined, decide([], allowAll)), ["1.0", "", "400", "denied", "", ""]);
});

test("on a live socket: a registry failure is a 500 on both sides", async (t) => {
  const node = await identity("web1");
  const server = await startServer(t, "router", {
    domain: "submit",
    registry: {
      lookup: () => {
        throw new Error("registry broken");
      },
    },
  });
  const client = closing(
    t,
    createClientSocket("dealer", { identity: node, serverKey: server.identity.curvePublic }),
  );
  const events = new EventLog(client);
  client.connect(server.endpoint.address);
  await server.events.authFailure(500);
  await events.authFailure(500);
  t.is(server.zap.metrics.get("zap_denied_total", { reason: "error" }), 1);
});

test("denials are logged with address, Z85 key and reason; revoked keys are not reported as unknown", async (t) => {
  const revoked = await identity("revoked");
  const stranger = await identity("stranger");
  const { logger, lines } = captureLogger();
  const unknown: string[] = [];
  const server = await startServer(t, "router", {
    domain: "feed",
    registry: staticRegistry([{ domain: "feed", id: revoked }], [revoked]),
    logger,
    onUnknown: (_domain, _address, key) => unknown.push(z85Encode(key)),
  });
  for (const id of [revoked, stranger, stranger]) {
    const client = closing(
      t,
      createClientSocket("dealer", { identity: id, serverKey: server.identity.curvePublic }),
    );
    const events = new EventLog(client);
    client.connect(server.endpoint.address);
    await events.authFailure(400);
  }
  t.is(server.zap.metrics.get("zap_denied_total", { reason: "revoked" }), 1);
  t.is(server.zap.metrics.get("zap_denied_total", { reason: "unknown" }), 2);
  t.deepEqual(unknown, [z85Encode(stranger.curvePublic), z85Encode(stranger.curvePublic)]);
  const refused = lines.filter((l) => l.msg === "peer refused");
  t.is(refused.length, 3);
  t.like(refused[0], {
    address: "127.0.0.1",
    key: z85Encode(revoked.curvePublic),
    reason: "revoked",
    domain: "feed",
  });
  t.like(refused[1], { key: z85Encode(stranger.curvePublic), reason: "unknown" });
});

test("the denial log lets through a bounded number of lines per address", async (t) => {
  const stranger = await identity("stranger");
  const { logger, lines } = captureLogger();
  const context = createTransportContext();
  const zap = await ZapHandler.start({
    context,
    registry: staticRegistry([]),
    logger,
    denialLog: new RateLimitedLog(60_000, 1, () => 0),
  });
  t.teardown(() => zap.close());
  const serverId = await identity("publisher");
  const endpoint = await BoundEndpoint.open(
    () => createServerSocket("router", { context, identity: serverId, domain: "submit" }),
    "tcp://127.0.0.1:*",
  );
  t.teardown(() => endpoint.close());
  for (let i = 0; i < 3; i++) {
    const client = closing(
      t,
      createClientSocket("dealer", { identity: stranger, serverKey: serverId.curvePublic }),
    );
    const events = new EventLog(client);
    client.connect(endpoint.address);
    await events.authFailure(400);
  }
  t.is(zap.metrics.get("zap_denied_total", { reason: "unknown" }), 3);
  t.is(lines.filter((l) => l.msg === "peer refused").length, 1);
});

test("a second handler in the same context is refused; a closed handler lets nobody in", async (t) => {
  const node = await identity("web1");
  const server = await startServer(t, "router", {
    domain: "submit",
    registry: staticRegistry([{ domain: "submit", id: node }]),
  });
  const error = await t.throwsAsync(
    ZapHandler.start({ context: server.context, registry: allowAll, logger: silentLogger() }),
  );
  t.true(error instanceof F2bzError && error.code === "BIND_FAILED");

  await server.zap.close();
  await server.zap.close(); // idempotent
  const client = closing(
    t,
    createClientSocket("dealer", { identity: node, serverKey: server.identity.curvePublic }),
  );
  client.connect(server.endpoint.address);
  await server.events.waitFor((e) => e.type.startsWith("handshake:error:"), "a failed handshake");
  t.false(server.events.types().includes("handshake"));
});
