import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import anyTest, { type ExecutionContext } from "ava";
import type { PublisherSettings } from "../../src/publisher/daemon.js";
import { startPublisher } from "../../src/publisher/daemon.js";
import { runCli } from "../helpers/cli.js";
import { ANY_PORT, testCluster, testLogger } from "../helpers/cluster.js";
import { testWhen } from "../helpers/skip.js";

/**
 * Interoperability with an independent implementation: pyzmq (Debian's python3-zmq, over the
 * system libzmq) reads certificates made by `f2bz keygen` with its own loader and connects to an
 * f2bz publisher with CURVE, as any third-party client would.
 */
const PYTHON = "/usr/bin/python3";
const CLIENT = fileURLToPath(new URL("fixtures/pyzmq_client.py", import.meta.url));

function hasPyzmq(): boolean {
  if (!existsSync(PYTHON)) return false;
  try {
    execFileSync(PYTHON, ["-c", "import zmq.auth"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const test = testWhen(
  anyTest,
  hasPyzmq(),
  "/usr/bin/python3 has no zmq: the pyzmq interop tests (apt-get install python3-zmq)",
);

function pyzmq(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(PYTHON, [CLIENT, ...args], { timeout: 20_000 }, (error, stdout) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, out: stdout.trim() });
    });
  });
}

async function setup(t: ExecutionContext) {
  const cluster = await testCluster(t);
  const keys = path.join(cluster.dir, "keygen");
  for (const name of ["pyclient", "stranger", "pub"]) {
    const r = await runCli(["keygen", "--name", name, "--dir", keys]);
    t.is(r.code, 0, r.stderr);
  }
  const added = await runCli([
    "keys",
    "add",
    "subscriber",
    path.join(keys, "pyclient.key"),
    "--keys",
    cluster.keysDir,
  ]);
  t.is(added.code, 0, added.stderr);
  const node = await cluster.node("pub");
  const config = cluster.config(
    { ...node, secretKey: path.join(keys, "pub.key_secret") },
    { publisher: { submit: ANY_PORT, feed: ANY_PORT, snapshot: ANY_PORT, keys: cluster.keysDir } },
  ) as PublisherSettings;
  const publisher = await startPublisher(config, testLogger());
  t.teardown(() => publisher.close());
  return { cluster, keys, publisher, serverKey: path.join(keys, "pub.key") };
}

test("pyzmq with a keygen certificate receives the feed and takes a snapshot over CURVE", async (t) => {
  t.timeout(60_000);
  const { keys, publisher, serverKey } = await setup(t);
  const secret = path.join(keys, "pyclient.key_secret");
  const feed = await pyzmq(["feed", publisher.endpoints.feed, serverKey, secret]);
  t.is(feed.code, 0, feed.out);
  t.is(feed.out, "f2bz/1/heartbeat 2", "a heartbeat: topic and publisher sequence");
  const snapshot = await pyzmq(["snapshot", publisher.endpoints.snapshot, serverKey, secret]);
  t.is(snapshot.code, 0, snapshot.out);
  t.is(snapshot.out, "f2bz/1/end 0 0");
});

test("pyzmq with an unknown key, or without CURVE, gets nothing; the unknown key waits in pending", async (t) => {
  t.timeout(60_000);
  const { cluster, keys, publisher, serverKey } = await setup(t);
  const stranger = await pyzmq([
    "feed",
    publisher.endpoints.feed,
    serverKey,
    path.join(keys, "stranger.key_secret"),
  ]);
  t.is(stranger.code, 2, stranger.out);
  const plain = await pyzmq(["feed", publisher.endpoints.feed, serverKey]);
  t.is(plain.code, 2, plain.out);
  const pending = await readdir(path.join(cluster.keysDir, "pending"));
  t.is(pending.length, 1, "the stranger's key, recorded for `f2bz keys pending`");
  const listed = await runCli(["keys", "pending", "--keys", cluster.keysDir]);
  t.regex(listed.stdout, /wants subscriber/);
});
