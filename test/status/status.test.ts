import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import { Outbox } from "../../src/monitor/outbox.js";
import { PublisherStore } from "../../src/publisher/store.js";
import type { StatusReport } from "../../src/status/read.js";
import { SubscriberStore } from "../../src/subscriber/store.js";
import { runCli } from "../helpers/cli.js";
import { type TestNode, testCluster } from "../helpers/cluster.js";

const HOUR = 3_600_000;
const SUBMIT_1 = "tcp://127.0.0.1:5678";
const SUBMIT_2 = "tcp://127.0.0.1:6678";
/** How the monitor's outbox names the two publishers (their pinned keys); status shows the endpoints. */
const KEY_1 = "a1".repeat(32);
const KEY_2 = "b2".repeat(32);
const FEED_1 = "tcp://127.0.0.1:5680";
const FEED_2 = "tcp://127.0.0.1:6680";

const sections = (keys: string, key: string) => ({
  publisher: { keys },
  monitor: {
    publishers: [
      { submit: SUBMIT_1, key },
      { submit: SUBMIT_2, key },
    ],
  },
  subscriber: {
    publishers: [
      { feed: FEED_1, snapshot: "tcp://127.0.0.1:5681", key },
      { feed: FEED_2, snapshot: "tcp://127.0.0.1:6681", key },
    ],
  },
});

/** Fills the three state files through the daemons' own stores, as running daemons would. */
function fillState(stateDir: string, origin: TestNode, now: number) {
  const publisher = new PublisherStore(stateDir);
  const id = (seq: number) => `${origin.identity.nodeId}:${seq}`;
  for (const [seq, ip, expires] of [
    [11, "192.0.2.1", now + 2 * HOUR],
    [12, "192.0.2.2", now + HOUR],
  ] as const) {
    const event = { id: id(seq), origin: origin.identity.nodeId, seq, kind: "ban" as const, jail: "sshd" };
    publisher.accept({ ...event, ip, time: now, expires }, Buffer.from("p"), Buffer.from("s"), now);
  }
  const outbox = new Outbox(stateDir, [
    { name: KEY_1, endpoint: SUBMIT_1 },
    { name: KEY_2, endpoint: SUBMIT_2 },
  ]);
  const entry = (seq: number, time: number) => ({
    id: id(seq),
    seq,
    time,
    expires: time + HOUR,
    payload: Buffer.from("p"),
    signature: Buffer.from("s"),
  });
  outbox.commit(
    "file",
    [entry(21, now - 90_000), entry(22, now - 30_000)],
    { inode: 4242, offset: 1234 },
    {},
  );
  outbox.acknowledge(KEY_1, id(21));
  outbox.acknowledge(KEY_1, id(22));
  outbox.acknowledge(KEY_2, id(22));
  const subscriber = new SubscriberStore(stateDir);
  subscriber.addHolder({
    jail: "f2bz",
    ip: "198.51.100.7",
    origin: "x",
    source: "sshd",
    id: "x:1",
    expires: now + 10 * 60_000,
  });
  // Two holders of one ban: one applied ban, lifted at the later expiry.
  subscriber.addHolder({
    jail: "f2bz",
    ip: "198.51.100.7",
    origin: "y",
    source: "sshd",
    id: "y:1",
    expires: now + 5 * 60_000,
  });
  subscriber.addHolder({
    jail: "f2bz",
    ip: "198.51.100.8",
    origin: "x",
    source: "sshd",
    id: "x:2",
    expires: now + HOUR,
  });
  subscriber.markSeen("x:1", now);
  subscriber.setPublisherSeq({ name: KEY_1, feed: FEED_1 }, 77);
  return {
    close() {
      publisher.close();
      outbox.close();
      subscriber.close();
    },
  };
}

async function setUp(t: Parameters<typeof testCluster>[0]) {
  const cluster = await testCluster(t);
  const node = await cluster.node("web1");
  await cluster.authorize(node, "monitor");
  const config = await cluster.configFile(node, sections(cluster.keysDir, node.publicKey));
  return { cluster, node, config };
}

test("status prints each daemon's state, read from the files of stopped daemons", async (t) => {
  const { node, config } = await setUp(t);
  const now = Date.now();
  fillState(node.stateDir, node, now).close();
  const before = (await readdir(node.stateDir)).sort();

  const result = await runCli(["status", "--config", config]);
  t.is(result.stderr, "");
  t.is(result.code, 0);
  const lines = result.stdout.split("\n");
  t.is(lines[0], `node web1, state directory ${node.stateDir}`);
  t.is(lines[1], "publisher   publisher.sqlite3");
  t.regex(
    result.stdout,
    /^ {2}active bans {3}2, next expiry \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(in (59m \d+s|1h)\)$/m,
  );
  t.regex(result.stdout, /^ {2}sequence {6}2$/m);
  t.regex(result.stdout, /^ {2}seen ids {6}2$/m);
  t.regex(result.stdout, /^ {2}origins {7}1$/m);
  t.true(lines.includes(`    ${node.identity.nodeId}  web1  high-water mark 12`));
  t.true(lines.includes("monitor     monitor.sqlite3"));
  t.regex(result.stdout, /^ {2}outbox {8}1 event, oldest queued .* \(1m 3\ds ago\)$/m);
  t.true(lines.includes(`  pending       0  ${SUBMIT_1}`));
  t.true(lines.includes(`                1  ${SUBMIT_2}`));
  t.true(lines.includes("  log position  file inode 4242 offset 1234"));
  t.true(lines.includes("subscriber  subscriber.sqlite3"));
  t.regex(result.stdout, /^ {2}applied bans {2}2, next expiry .* \(in (9m \d+s|10m)\)$/m);
  t.true(lines.includes(`  last sequence 77  ${FEED_1}`));
  t.true(lines.includes(`                none yet  ${FEED_2}`));
  t.true(lines.includes("  ledger        2 entries"));
  t.true(lines.includes("  seen ids      1"));
  // Read-only and without a trace: no -wal/-shm created for the stopped daemons (they would be
  // owned by whoever ran status, and lock the daemons out of their own files).
  t.deepEqual((await readdir(node.stateDir)).sort(), before);
});

test("status --json reads the state of running daemons, consistent with what they wrote", async (t) => {
  const { node, config } = await setUp(t);
  const now = Date.now();
  // The stores stay open, as in running daemons: what they wrote is still in their WAL files.
  const state = fillState(node.stateDir, node, now);
  t.teardown(() => state.close());

  const result = await runCli(["status", "--config", config, "--json"]);
  t.is(result.stderr, "");
  t.is(result.code, 0);
  const report = JSON.parse(result.stdout) as StatusReport;
  t.is(report.node, "web1");
  t.is(report.stateDir, node.stateDir);
  t.like(report.publisher, {
    state: "ok",
    configured: true,
    file: path.join(node.stateDir, "publisher.sqlite3"),
    activeBans: 2,
    nextExpiry: now + HOUR,
    publisherSeq: 2,
    seenIds: 2,
  });
  if (report.publisher.state !== "ok") return;
  t.deepEqual(report.publisher.origins, [{ origin: node.identity.nodeId, name: "web1", highWaterMark: 12 }]);
  t.like(report.monitor, { state: "ok", outbox: 1, oldestQueued: now - 90_000 });
  if (report.monitor.state !== "ok") return;
  t.deepEqual(report.monitor.pending, [
    { publisher: SUBMIT_1, events: 0 },
    { publisher: SUBMIT_2, events: 1 },
  ]);
  t.deepEqual(report.monitor.positions, [{ source: "file", inode: 4242, offset: 1234 }]);
  t.true(report.monitor.sequence >= 22);
  t.like(report.subscriber, {
    state: "ok",
    appliedBans: 2,
    nextExpiry: now + 10 * 60_000,
    ledger: 2,
    seenIds: 1,
  });
  if (report.subscriber.state !== "ok") return;
  t.deepEqual(report.subscriber.publishers, [
    { feed: FEED_1, lastSeq: 77 },
    { feed: FEED_2, lastSeq: null },
  ]);
});

test("status says which daemons have no state yet, and exits 0", async (t) => {
  const cluster = await testCluster(t);
  const node = await cluster.node("web2");
  const config = await cluster.configFile(node, {
    subscriber: { publishers: [{ feed: FEED_1, snapshot: "tcp://127.0.0.1:5681", key: node.publicKey }] },
  });
  const empty = await runCli(["status", "--config", config]);
  t.is(empty.code, 0);
  t.is(empty.stderr, "");
  t.deepEqual(empty.stdout.split("\n"), [
    `node web2, state directory ${node.stateDir}`,
    "publisher   no state: publisher.sqlite3 not found (no section for it in this config)",
    "monitor     no state: monitor.sqlite3 not found (no section for it in this config)",
    "subscriber  no state: subscriber.sqlite3 not found (not run on this node yet)",
    "",
  ]);

  new SubscriberStore(node.stateDir).close();
  const json = await runCli(["status", "--config", config, "--json"]);
  t.is(json.code, 0);
  const report = JSON.parse(json.stdout) as StatusReport;
  t.like(report.publisher, { state: "absent", configured: false });
  t.like(report.monitor, { state: "absent", configured: false });
  t.like(report.subscriber, { state: "ok", configured: true, appliedBans: 0, nextExpiry: null, ledger: 0 });
});

test("a state file that is not a database is reported, with exit 74, the others still shown", async (t) => {
  const cluster = await testCluster(t);
  const node = await cluster.node("web3");
  const config = await cluster.configFile(node, {});
  new PublisherStore(node.stateDir).close();
  await writeFile(
    path.join(node.stateDir, "monitor.sqlite3"),
    "not a database, but long enough to be read as one?",
  );
  const result = await runCli(["status", "--config", config]);
  t.is(result.code, 74);
  t.regex(result.stdout, /^publisher {3}publisher\.sqlite3\n {2}active bans {3}0$/m);
  t.regex(result.stdout, /^monitor {5}monitor\.sqlite3 is unreadable: .+$/m);
  t.regex(result.stdout, /^subscriber {2}no state: subscriber\.sqlite3 not found/m);
});

test("a bad config is one line on stderr, and nothing is read", async (t) => {
  const cluster = await testCluster(t);
  const file = path.join(cluster.dir, "bad.yaml");
  await writeFile(file, "node:\n  name: web1\n  identity: k\nmetrics:\n  listen: 0.0.0.0:9464\n");
  const result = await runCli(["status", "--config", file]);
  t.is(result.code, 78);
  t.is(result.stdout, "");
  t.is(
    result.stderr,
    `f2bz status: config '${file}' line 5: 'metrics.listen': expected a loopback address and port such as 127.0.0.1:9464 or [::1]:9464, found '0.0.0.0:9464'\n`,
  );
  const missing = await runCli(["status", "--config", path.join(cluster.dir, "nope.yaml")]);
  t.is(missing.code, 66);
  t.is(missing.stderr.split("\n").length, 2);
});
