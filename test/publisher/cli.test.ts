import { spawn } from "node:child_process";
import { once } from "node:events";
import test from "ava";
import { PublisherStore } from "../../src/publisher/store.js";
import { waitFor } from "../harness/wait.js";
import { CLI, ensureBuilt } from "../helpers/cli.js";
import { ANY_PORT, testCluster } from "../helpers/cluster.js";
import { authorized, DEADLINE_MS, sign, submitter } from "./helpers.js";

/**
 * `f2bz publisher --config FILE` as an operator runs it (under systemd): foreground, JSON log
 * lines on stdout, SIGHUP handled without stopping, SIGTERM drains and exits 0 with its state
 * on disk. Needs a current build (`npm run build`).
 */
test("the built CLI runs the publisher, logs JSON, survives SIGHUP and stops cleanly on SIGTERM", async (t) => {
  ensureBuilt();
  const cluster = await testCluster(t);
  const [web1] = await authorized(cluster, "monitor", "web1");
  const node = await cluster.node("pub");
  const config = await cluster.configFile(node, {
    publisher: { submit: ANY_PORT, feed: ANY_PORT, snapshot: ANY_PORT, keys: cluster.keysDir },
    logging: { level: "info" },
  });

  const child = spawn(process.execPath, [CLI, "publisher", "--config", config], {
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const lines = () =>
    stdout
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const line = (msg: string) =>
    waitFor(() => lines().find((l) => l.msg === msg), {
      timeoutMs: DEADLINE_MS,
      what: `the log line '${msg}'`,
    });

  const listening = await line("listening");
  t.is(listening.name, "publisher");
  t.is(listening.node, "pub");
  t.regex(String(listening.submit), /^tcp:\/\/127\.0\.0\.1:\d+$/);
  await line("publisher started");

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
  await line("event accepted");

  child.kill("SIGHUP");
  await line("log file reopened");
  t.is(child.exitCode, null, "still running after SIGHUP");

  child.kill("SIGTERM");
  const [code, signal] = await exited;
  t.is(signal, null);
  t.is(code, 0, stderr);
  t.truthy(lines().find((l) => l.msg === "publisher stopped"));
  t.is(stderr, "");

  const store = new PublisherStore(node.stateDir);
  t.teardown(() => store.close());
  t.is(store.activeCount(), 1);
  t.true(store.hasSeen(event.event.id));
  t.is(store.publisherSeq, 1);
});
