import { promises as fs } from "node:fs";
import path from "node:path";
import type { ExecutionContext } from "ava";
import test from "ava";
import type * as zmq from "zeromq";
import type { SecretIdentity } from "../../src/keys/identity.js";
import { pendingDir, pendingId, roleDir } from "../../src/keys/store.js";
import { parseZpl } from "../../src/keys/zpl.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import {
  authorize,
  closing,
  EventLog,
  FAST_RECONNECT,
  Inbox,
  identity,
  keysCli,
  keysDir,
  openAccess,
  revoke,
  type Server,
  startServer,
} from "./helpers.js";

/**
 * The publisher's feed as the daemon wires it: AccessControl polling the key directory, the ZAP
 * handler answering from it, and a removal re-binding the feed endpoint. A ticker publishes
 * sequence numbers so that "stopped receiving" can be told from "nothing was sent".
 */
async function startFeed(t: ExecutionContext, dir: string) {
  let feed: Server<zmq.Publisher> | undefined;
  const { access, reloads } = await openAccess(t, dir, {
    onRemoved: (domain) => {
      if (domain === "feed") void feed?.endpoint.rebind();
    },
  });
  feed = await startServer(t, "publisher", {
    domain: "feed",
    registry: access,
    onUnknown: access.recordUnknown,
  });
  let seq = 0;
  const ticker = setInterval(() => {
    // A fresh string per send: zeromq.js may send without copying. Sends fail only once closed.
    if (!feed!.endpoint.closed) void feed!.endpoint.socket.send(String(++seq)).catch(() => {});
  }, 20);
  t.teardown(() => clearInterval(ticker));
  return { feed, access, reloads, sent: () => seq };
}

function subscribe(t: ExecutionContext, feed: Server<zmq.Publisher>, node: SecretIdentity) {
  const socket = closing(
    t,
    createClientSocket("subscriber", {
      identity: node,
      serverKey: feed.identity.curvePublic,
      ...FAST_RECONNECT,
    }),
  );
  socket.subscribe();
  const events = new EventLog(socket);
  const inbox = new Inbox(socket);
  socket.connect(feed.endpoint.address);
  const last = () => Math.max(0, ...inbox.items.map((m) => Number(m[0]?.toString())));
  return { socket, events, inbox, last };
}

test("a revoked subscriber is cut off while another subscriber keeps receiving", async (t) => {
  const dir = await keysDir(t);
  const [alice, bob] = await Promise.all([identity("alice"), identity("bob")]);
  await authorize(dir, "subscriber", alice);
  await authorize(dir, "subscriber", bob);
  const { feed, sent } = await startFeed(t, dir);
  const a = subscribe(t, feed, alice);
  const b = subscribe(t, feed, bob);
  await a.inbox.waitFor(() => true, "alice's first update");
  await b.inbox.waitFor(() => true, "bob's first update");

  const revokedAt = Date.now();
  await revoke(dir, "subscriber", "alice");
  // The reload re-binds the feed; alice's reconnect is then refused by ZAP.
  await a.events.waitFor((e) => e.type === "disconnect", "alice to be disconnected");
  await a.events.authFailure(400);
  const cut = sent();
  t.log(`alice refused ${Date.now() - revokedAt} ms after the revocation`);

  await b.inbox.waitFor((m) => Number(m[0]?.toString()) > cut + 5, "bob's updates after the cut");
  t.true(a.last() <= cut, `alice got update ${a.last()} sent after she was refused at ${cut}`);
  t.is(a.events.items.filter((e) => e.type === "handshake").length, 1);
  t.is(feed.zap.metrics.get("zap_denied_total", { reason: "revoked" }), 1);
  t.is(feed.zap.metrics.get("zap_denied_total", { reason: "unknown" }), 0);
  t.is(feed.endpoint.generation, 1);
});

test("a new key takes effect without restart: pending, `keys accept`, reconnect", async (t) => {
  const dir = await keysDir(t);
  const carol = await identity("carol");
  const { feed, access, reloads } = await startFeed(t, dir);
  const c = subscribe(t, feed, carol);
  await c.events.authFailure(400);
  await feed.events.authFailure(400);
  await access.flushPending();

  const id = pendingId(carol.curvePublic);
  const pending = parseZpl(await fs.readFile(path.join(pendingDir(dir), `${id}.key`), "utf8"));
  t.is(pending.get("metadata/role"), "subscriber");
  t.is(pending.get("metadata/address"), "127.0.0.1");
  await keysCli(dir, "accept", id);
  await reloads.waitFor(() => access.lookup("feed", carol.curvePublic) !== undefined, "carol's key to load");

  // libzmq ends a connect session after a ZAP denial: the client connects again.
  c.socket.disconnect(feed.endpoint.address);
  c.socket.connect(feed.endpoint.address);
  await c.events.handshake();
  await c.inbox.waitFor(() => true, "carol's first update");
  t.is(feed.endpoint.generation, 0);
  t.is(feed.zap.metrics.get("zap_allowed_total"), 1);
});

test("a broken key file is skipped: known keys still get in, the key next to it too, nobody is cut", async (t) => {
  const dir = await keysDir(t);
  const [dave, erin] = await Promise.all([identity("dave"), identity("erin")]);
  await authorize(dir, "subscriber", dave);
  const { feed, reloads } = await startFeed(t, dir);
  const d = subscribe(t, feed, dave);
  await d.inbox.waitFor(() => true, "dave's first update");

  await fs.writeFile(path.join(roleDir(dir, "subscriber"), "broken.key"), 'curve\n    public-key = "x"\n');
  await authorize(dir, "subscriber", erin);
  await reloads.waitFor((r) => r.ok && r.skipped.length === 1, "the reload that skips broken.key");
  const again = subscribe(t, feed, dave);
  await again.events.handshake();
  const e = subscribe(t, feed, erin);
  await e.events.handshake();
  const received = d.last();
  await d.inbox.waitFor((m) => Number(m[0]?.toString()) > received, "dave to keep receiving");
  t.is(feed.endpoint.generation, 0);
});
