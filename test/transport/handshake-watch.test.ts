import test, { type ExecutionContext } from "ava";
import type { SecretIdentity } from "../../src/keys/identity.js";
import { fingerprint } from "../../src/keys/identity.js";
import { type HandshakeNews, HandshakeWatch } from "../../src/transport/handshake-watch.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import { closing, FAST_RECONNECT, identity, Recorder, startServer, staticRegistry } from "./helpers.js";

/** A monitor's REQ socket to a real CURVE server, its handshake news recorded. */
async function watchedClient(
  t: ExecutionContext,
  id: SecretIdentity,
  serverKey: Uint8Array,
  address: string,
) {
  const news = new Recorder<HandshakeNews>();
  const client = closing(t, createClientSocket("request", { identity: id, serverKey, ...FAST_RECONNECT }));
  const watch = new HandshakeWatch({ role: "monitor", serverKey, onNews: (n) => news.record(n) });
  const watching = watch.watch(client);
  client.connect(address);
  void client.send("event").catch(() => {});
  return { news, client, watching, watch };
}

test("an authorized key is told connected; the watch ends when the socket closes", async (t) => {
  const monitor = await identity("web1");
  const server = await startServer(t, "reply", {
    domain: "submit",
    registry: staticRegistry([{ domain: "submit", id: monitor }]),
  });
  const { news, client, watching } = await watchedClient(
    t,
    monitor,
    server.identity.curvePublic,
    server.endpoint.address,
  );
  await news.waitFor((n) => n.type === "connected", "connected");
  client.close();
  await watching;
  t.false(news.items.some((n) => n.type === "refused" || n.type === "mismatch"));
});

test("a key the publisher does not know is told refused, naming where the key belongs", async (t) => {
  const stranger = await identity("web9");
  const server = await startServer(t, "reply", { domain: "submit", registry: staticRegistry([]) });
  const { news } = await watchedClient(t, stranger, server.identity.curvePublic, server.endpoint.address);
  const refused = await news.waitFor((n) => n.type === "refused", "refused");
  t.is(
    refused.type === "refused" ? refused.problem : "",
    "publisher refused our key: add this node's public .key to the publisher's keys/authorized/monitors",
  );
  t.false(news.items.some((n) => n.type === "connected"));
});

test("a pinned key that is not the publisher's is told mismatch after repeated broken handshakes", async (t) => {
  const monitor = await identity("web1");
  const impostor = await identity("not-the-publisher");
  const server = await startServer(t, "reply", {
    domain: "submit",
    registry: staticRegistry([{ domain: "submit", id: monitor }]),
  });
  const { news, watch } = await watchedClient(t, monitor, impostor.curvePublic, server.endpoint.address);
  const mismatch = await news.waitFor((n) => n.type === "mismatch", "mismatch");
  if (mismatch.type !== "mismatch") return t.fail();
  t.is(mismatch.problem, "publisher key does not match: check monitor.publishers[].key");
  t.is(mismatch.fields.pinned, fingerprint(impostor.curvePublic));
  t.true(mismatch.failures >= 3);
  t.true(watch.failures >= mismatch.failures);
  t.false(news.items.some((n) => n.type === "connected"));
});
