import test from "ava";
import { PublisherStore } from "../../src/publisher/store.js";
import { spawnDaemon } from "../helpers/cli.js";
import { ANY_PORT, testCluster } from "../helpers/cluster.js";
import type { LogLine } from "../helpers/logs.js";
import { authorized, sign, submitter } from "./helpers.js";

/**
 * `f2bz publisher --config FILE` as an operator runs it (under systemd): foreground, JSON log
 * lines on stdout, SIGHUP handled without stopping, SIGTERM drains and exits 0 with its state
 * on disk. Needs a current build (`npm run build`).
 */
test("the built CLI runs the publisher, logs JSON, survives SIGHUP and stops cleanly on SIGTERM", async (t) => {
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const node = await cluster.node("pub");
  const config = await cluster.configFile(node, {
    publisher: { submit: ANY_PORT, feed: ANY_PORT, snapshot: ANY_PORT, keys: cluster.keysDir },
    logging: { level: "info" },
  });

  const daemon = spawnDaemon(t, ["publisher", "--config", config]);
  const [listening] = (await daemon.waitLog("listening")) as [LogLine];
  t.is(listening.name, "publisher");
  t.is(listening.node, "pub");
  t.regex(String(listening.submit), /^tcp:\/\/127\.0\.0\.1:\d+$/);
  await daemon.started("publisher");

  const endpoints = {
    submit: String(listening.submit),
    feed: String(listening.feed),
    snapshot: String(listening.snapshot),
  };
  const publisher = { node, running: { endpoints } };
  const monitor = submitter(t, web1!, publisher);
  const event = await sign(web1!.identity, { seq: 1, ip: "203.0.113.7" });
  t.deepEqual(await monitor.submit(event), { type: "ack", id: event.event.id });
  monitor.socket.close();
  await daemon.waitLog("event accepted");

  daemon.child.kill("SIGHUP");
  await daemon.waitLog("log file reopened");
  t.is(daemon.child.exitCode, null, "still running after SIGHUP");

  daemon.child.kill("SIGTERM");
  t.deepEqual(await daemon.exited, { code: 0, signal: null }, daemon.stderr());
  t.truthy(daemon.lines.find((l) => l.msg === "publisher stopped"));
  t.is(daemon.stderr(), "");

  const store = new PublisherStore(node.stateDir);
  t.teardown(() => store.close());
  t.is(store.activeCount(), 1);
  t.true(store.hasSeen(event.event.id));
  t.is(store.publisherSeq, 1);
});
