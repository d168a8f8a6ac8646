import net from "node:net";
import { setImmediate } from "node:timers/promises";
import test from "ava";
import type * as zmq from "zeromq";
import { createClientSocket } from "../../src/transport/sockets.js";
import { waitFor } from "../harness/wait.js";
import {
  authorize,
  closing,
  EventLog,
  FAST_RECONNECT,
  Inbox,
  identity,
  keysDir,
  openAccess,
  revoke,
  type Server,
  startServer,
} from "./helpers.js";

/**
 * Issue 10, finding 7: a revocation re-binds the feed; re-binding by close + bind left the port
 * free for a moment, and a local process that bound it then held the endpoint for good.
 */

/** Whether a plain TCP listener (another local user's process) could take `port` just now. */
function portTaken(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

test("a revocation drops the revoked peer without ever freeing the port", async (t) => {
  const dir = await keysDir(t);
  const [alice, bob] = await Promise.all([identity("alice"), identity("bob")]);
  await authorize(dir, "subscriber", alice);
  await authorize(dir, "subscriber", bob);
  let feed: Server<zmq.Publisher> | undefined;
  let rebind: Promise<void> | undefined;
  const { access } = await openAccess(t, dir, {
    onRemoved: (domain) => {
      if (domain === "feed") rebind = feed?.endpoint.rebind();
    },
  });
  feed = await startServer(t, "publisher", { domain: "feed", registry: access });
  let seq = 0;
  const ticker = setInterval(() => {
    if (!feed!.endpoint.closed) void feed!.endpoint.socket.send(String(++seq)).catch(() => {});
  }, 20);
  t.teardown(() => clearInterval(ticker));
  const subscribe = (node: typeof alice) => {
    const socket = closing(
      t,
      createClientSocket("subscriber", {
        identity: node,
        serverKey: feed!.identity.curvePublic,
        ...FAST_RECONNECT,
      }),
    );
    socket.subscribe();
    const client = { events: new EventLog(socket), inbox: new Inbox(socket) };
    socket.connect(feed!.endpoint.address);
    return client;
  };
  const a = subscribe(alice);
  const b = subscribe(bob);
  await a.inbox.waitFor(() => true, "alice's first update");
  await b.inbox.waitFor(() => true, "bob's first update");
  const port = Number(feed.endpoint.address.split(":").at(-1));

  // A competitor binds the port in a tight loop from before the revocation until 100 tries after
  // the rebind settled (bounded: 500 000 tries); it must never get it.
  let settled = false;
  const competitor = (async () => {
    let tries = 0;
    let wins = 0;
    for (let after = 0; tries < 500_000 && after < 100; tries++) {
      if (await portTaken(port)) wins++;
      // A refused listen reports on the next tick: without a turn of the loop, nothing else runs.
      await setImmediate();
      if (settled) after++;
    }
    return { tries, wins };
  })();
  await revoke(dir, "subscriber", "alice");
  await waitFor(() => (rebind ? true : undefined), {
    timeoutMs: 8_000,
    intervalMs: 5,
    what: "the rebind to start",
  });
  const outcome = await rebind!.then(
    () => "rebound",
    (error: Error) => error.message,
  );
  settled = true;
  const { tries, wins } = await competitor;
  t.log(`${tries} attempts to bind port ${port} during the revocation`);
  t.is(wins, 0, "another process bound the endpoint's port during the rebind");
  t.is(outcome, "rebound");
  t.is(feed.endpoint.generation, 1);

  // The revoked peer's session ended and its reconnect is refused; the other peer carries on.
  await a.events.waitFor((e) => e.type === "disconnect", "alice to be disconnected");
  await a.events.authFailure(400);
  const cut = seq;
  await b.inbox.waitFor((m) => Number(m[0]?.toString()) > cut + 5, "bob's updates after the cut");
  const last = Math.max(0, ...a.inbox.items.map((m) => Number(m[0]?.toString())));
  t.true(last <= cut, `alice got update ${last} after the cut at ${cut}`);
});
