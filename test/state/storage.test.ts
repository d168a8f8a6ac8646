import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import Database from "better-sqlite3";
import { Outbox } from "../../src/monitor/outbox.js";
import { PublisherStore } from "../../src/publisher/store.js";
import { type CliResult, runCli, spawnDaemon } from "../helpers/cli.js";
import { ANY_PORT, type TestCluster, type TestNode, testCluster } from "../helpers/cluster.js";
import { testWhen } from "../helpers/skip.js";
import { banLine, cliMonitorConfig, monitorLab } from "../monitor/helpers.js";
import { authorized, sign, submitter } from "../publisher/helpers.js";
import { canMountTmpfs, fillFileSystem, mountTmpfs, remountReadOnly } from "./helpers.js";

/**
 * Storage faults met by the real daemons (the built CLI): a state file that is not theirs, a
 * read-only state directory, a full disk. A state file is never reset or migrated into: the
 * operator's data (or another program's) stays as it was, and the daemon says why it stops.
 */

interface Publisher {
  cluster: TestCluster;
  node: TestNode;
  config: string;
  file: string;
}

async function publisherSetup(t: ExecutionContext): Promise<Publisher> {
  const cluster = await testCluster(t);
  await authorized(cluster, "monitor", "web1");
  const node = await cluster.node("pub");
  await mkdir(node.stateDir, { recursive: true, mode: 0o700 });
  const config = await cluster.configFile(node, {
    publisher: { submit: ANY_PORT, feed: ANY_PORT, snapshot: ANY_PORT, keys: cluster.keysDir },
    logging: { level: "info" },
  });
  return { cluster, node, config, file: path.join(node.stateDir, "publisher.sqlite3") };
}

/** A daemon that must refuse to start: it exits on its own, well before this deadline. */
const runPublisher = (p: Publisher): Promise<CliResult> =>
  runCli(["publisher", "--config", p.config], { timeoutMs: 20_000 });

function assertOneLine(t: ExecutionContext, r: CliResult, pattern: RegExp): void {
  t.false(r.timedOut, "the daemon started instead of refusing its state file");
  const lines = r.stderr.trimEnd().split("\n");
  t.is(lines.length, 1, r.stderr);
  t.regex(r.stderr, pattern);
  t.false(r.stderr.includes("    at "), "no stack trace");
}

/** The bytes of every file in the state directory: what "left untouched" is checked against. */
async function snapshotDir(dir: string): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  for (const name of (await readdir(dir)).sort()) out[name] = await readFile(path.join(dir, name));
  return out;
}

test("a state file that is not SQLite is refused with one line naming it, and left untouched", async (t) => {
  const p = await publisherSetup(t);
  const text = "this is not a database, but it is the operator's file\n".repeat(200);
  const garbage = Buffer.concat([Buffer.from(text), Buffer.from([0, 1, 2, 0xff])]);
  await writeFile(p.file, garbage, { mode: 0o600 });
  const before = await snapshotDir(p.node.stateDir);

  const r = await runPublisher(p);
  t.is(r.code, 65, r.stderr);
  assertOneLine(
    t,
    r,
    /^f2bz publisher: state file '.*\/publisher\.sqlite3' is not an f2bz publisher state database \(not an sqlite database, or a damaged one\); left untouched: move it away or point node\.stateDir elsewhere\n$/,
  );
  t.deepEqual(await snapshotDir(p.node.stateDir), before);
});

test("another application's SQLite database is refused, not migrated into", async (t) => {
  const p = await publisherSetup(t);
  const other = new Database(p.file);
  other.exec(
    "CREATE TABLE users (name TEXT PRIMARY KEY, mail TEXT); INSERT INTO users VALUES ('ann', 'a@x');",
  );
  other.close();
  const before = await snapshotDir(p.node.stateDir);

  const r = await runPublisher(p);
  t.is(r.code, 65, r.stderr);
  assertOneLine(
    t,
    r,
    /^f2bz publisher: state file '.*\/publisher\.sqlite3' is not an f2bz publisher state database \(tables 'users', schema version 0\); left untouched/,
  );
  t.deepEqual(await snapshotDir(p.node.stateDir), before);
});

test("the monitor's state file where the publisher expects its own is refused, naming whose it is", async (t) => {
  const p = await publisherSetup(t);
  // The real monitor's state file, as `f2bz monitor` leaves it, copied to the publisher's name.
  const monitorDir = path.join(p.cluster.dir, "monitor-state");
  const outbox = new Outbox(monitorDir, [{ name: "a".repeat(64), endpoint: "tcp://127.0.0.1:1" }]);
  outbox.close();
  await writeFile(p.file, await readFile(path.join(monitorDir, "monitor.sqlite3")), { mode: 0o600 });
  const before = await snapshotDir(p.node.stateDir);

  const r = await runPublisher(p);
  t.is(r.code, 65, r.stderr);
  assertOneLine(
    t,
    r,
    /^f2bz publisher: state file '.*\/publisher\.sqlite3' is not an f2bz publisher state database \(it is the monitor's\); left untouched/,
  );
  t.deepEqual(await snapshotDir(p.node.stateDir), before);
});

const mountable = canMountTmpfs();
const withMount = testWhen(
  test,
  mountable,
  "cannot mount a tmpfs (needs root and mount permission): storage fault tests",
);

withMount("a read-only state directory without a state file: a clear error, non-zero exit", async (t) => {
  const p = await publisherSetup(t);
  mountTmpfs(t, p.node.stateDir, 1024, true);
  const r = await runPublisher(p);
  t.is(r.code, 74, r.stderr);
  assertOneLine(
    t,
    r,
    /^f2bz publisher: state directory '.*\/state\/pub' is not writable: read-only file system\n$/,
  );
});

withMount(
  "a state directory turned read-only under an existing state file: a clear error, the file kept",
  async (t) => {
    const p = await publisherSetup(t);
    mountTmpfs(t, p.node.stateDir, 1024);
    new PublisherStore(p.node.stateDir).close();
    const before = await snapshotDir(p.node.stateDir);
    remountReadOnly(p.node.stateDir);

    const r = await runPublisher(p);
    t.is(r.code, 74, r.stderr);
    assertOneLine(
      t,
      r,
      /^f2bz publisher: state directory '.*\/state\/pub' is not writable: read-only file system\n$/,
    );
    t.deepEqual(await snapshotDir(p.node.stateDir), before);
  },
);

withMount(
  "disk full: the publisher acknowledges nothing it cannot store, keeps running, and recovers when space returns",
  async (t) => {
    const p = await publisherSetup(t);
    mountTmpfs(t, p.node.stateDir, 16_384);
    const [web1] = await authorized(p.cluster, "monitor", "web1");
    const daemon = spawnDaemon(t, ["publisher", "--config", p.config]);
    const [listening] = await daemon.waitLog("listening");
    await daemon.started("publisher");
    const reachable = {
      node: p.node,
      running: {
        endpoints: {
          submit: String(listening!.submit),
          feed: String(listening!.feed),
          snapshot: String(listening!.snapshot),
        },
      },
    };
    const monitor = submitter(t, web1!, reachable);
    const acked: string[] = [];
    const before = await sign(web1!.identity, { seq: 1, ip: "203.0.113.1" });
    t.deepEqual(await monitor.submit(before), { type: "ack", id: before.event.id });
    acked.push(before.event.ip);

    const filler = path.join(p.node.stateDir, "filler");
    t.true(fillFileSystem(filler) > 0);
    // Enough distinct bans to need new pages in the WAL whatever it had allocated before.
    const during = [];
    for (let seq = 2; seq <= 40; seq++)
      during.push(await sign(web1!.identity, { seq, ip: `203.0.113.${seq}` }));
    const replies = [];
    for (const event of during) replies.push(await monitor.submit(event));
    const refused = replies.filter((r) => r.type === "nack");
    t.true(refused.length > 0, "nothing was refused while the disk was full");
    for (const reply of refused) t.like(reply, { type: "nack", reason: "busy" });
    for (const [i, reply] of replies.entries()) if (reply.type === "ack") acked.push(during[i]!.event.ip);
    const [failed] = await daemon.waitLog("intake failed");
    t.regex(String(failed!.err), /database or disk is full/);
    t.is(daemon.child.exitCode, null, "the publisher keeps running while the disk is full");

    await rm(filler);
    // The monitor resends what was not acknowledged (its outbox keeps it): now accepted.
    for (const [i, reply] of replies.entries()) {
      if (reply.type === "ack") continue;
      const event = during[i]!;
      t.deepEqual(await monitor.submit(event), { type: "ack", id: event.event.id });
      acked.push(event.event.ip);
    }
    t.is(await daemon.stop(), 0, daemon.stderr());

    const db = new Database(path.join(p.node.stateDir, "publisher.sqlite3"), { readonly: true });
    t.teardown(() => db.close());
    t.is(db.pragma("integrity_check", { simple: true }), "ok");
    const held = (db.prepare("SELECT ip FROM holders").all() as { ip: string }[]).map((r) => r.ip);
    t.deepEqual(held.sort(), [...acked].sort(), "every acknowledged ban is stored, and only those");
  },
);

withMount(
  "disk full: the monitor keeps running, retries its commit, and delivers every line once space returns",
  async (t) => {
    const lab = await monitorLab(t);
    const stateDir = lab.monitorNode.stateDir;
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    // Room for the WAL to grow to its checkpoint size (1000 pages) once the filler is gone.
    mountTmpfs(t, stateDir, 16_384);
    const { feed } = await lab.startPublisher();
    const config = await cliMonitorConfig(lab);
    const daemon = spawnDaemon(t, ["monitor", "--config", config]);
    await daemon.started("monitor");
    await lab.append(banLine("sshd", "198.51.100.1"));
    await feed.waitCount(1);

    const filler = path.join(stateDir, "filler");
    t.true(fillFileSystem(filler) > 0);
    const ips = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 2}`);
    await lab.append(...ips.map((ip) => banLine("sshd", ip)));
    const [failed] = await daemon.waitLog("saving monitor state failed; retrying");
    t.regex(String(failed!.err), /database or disk is full/);
    t.is(daemon.child.exitCode, null, "the monitor keeps running while the disk is full");

    await rm(filler);
    await feed.waitCount(1 + ips.length);
    t.deepEqual(
      [...feed.describe()].sort(),
      ["198.51.100.1", ...ips].map((ip) => `ban sshd ${ip}`).sort(),
      "every line delivered once",
    );
    t.is(await daemon.stop(), 0, daemon.stderr());
    const db = new Database(path.join(stateDir, "monitor.sqlite3"), { readonly: true });
    t.teardown(() => db.close());
    t.is(db.pragma("integrity_check", { simple: true }), "ok");
  },
);
