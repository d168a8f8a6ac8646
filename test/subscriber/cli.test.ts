import { promises as fs } from "node:fs";
import path from "node:path";
import anyTest, { type ExecutionContext } from "ava";
import { BanHelperServer } from "../../src/ban-helper/server.js";
import { Fail2banClient } from "../../src/fail2ban/client.js";
import { NeverBanList } from "../../src/policy/never-ban.js";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";
import { createTestUser, isRoot } from "../harness/users.js";
import { type Daemon, runCli, spawnDaemon } from "../helpers/cli.js";
import { testCluster, testLogger } from "../helpers/cluster.js";
import { tempDir } from "../helpers/temp-dir.js";
import { DEADLINE_MS, startTestMonitor, startTestPublisher, waitCounter } from "./helpers.js";

/** `f2bz subscriber` as an operator runs it: the built CLI from /, a service's bare environment. */
function spawnSubscriber(t: ExecutionContext, config: string, as?: { uid: number; gid: number }): Daemon {
  return spawnDaemon(t, ["subscriber", "--config", config], {
    cwd: "/",
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/nonexistent", LANG: "C", NO_COLOR: "1" },
    ...(as ? { as } : {}),
  });
}

anyTest("f2bz subscriber runs until SIGTERM and then exits 0", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const sub = await cluster.node("sub");
  await cluster.authorize(sub, "subscriber");
  const pub = await startTestPublisher(t, cluster);
  const config = await cluster.configFile(sub, {
    subscriber: { publishers: [pub.entry], action: { type: "log" } },
  });
  const daemon = spawnSubscriber(t, config);
  await daemon.waitLog("subscriber started");
  await daemon.waitLog("snapshot loaded");
  daemon.child.kill("SIGTERM");
  t.deepEqual(await daemon.exited, { code: 0, signal: null }, daemon.stderr());
  t.truthy(daemon.lines.find((l) => l.msg === "subscriber stopped"));
});

anyTest("a bad action is refused at start, before any socket is opened", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const sub = await cluster.node("sub");
  const pubNode = await cluster.node("pub");
  const config = await cluster.configFile(sub, {
    subscriber: {
      publishers: [{ feed: "tcp://127.0.0.1:9", snapshot: "tcp://127.0.0.1:10", key: pubNode.publicKey }],
      action: { type: "exec", command: ["block-ip", "{ip}"] },
    },
  });
  const r = await runCli(["subscriber", "--config", config]);
  t.is(r.code, 78);
  t.regex(
    r.stderr,
    /line \d+: 'subscriber\.action\.command\[0\]': expected the absolute path of a program, without placeholders, found 'block-ip'\n$/,
  );
  t.is(r.stdout, "", "nothing started");
});

const rootTest = isRoot() ? ensureFail2ban(anyTest) : anyTest.skip;
if (!isRoot()) process.stderr.write("not root: skipping the unprivileged subscriber test\n");

rootTest("an unprivileged subscriber bans through the ban-helper", async (t) => {
  t.timeout(60_000);
  const [labA, labB] = await Promise.all([
    startFail2ban({ label: "a", jails: ["sshd-test"] }),
    startFail2ban({ label: "b", jails: ["f2bz"] }),
  ]);
  t.teardown(() => Promise.all([labA.cleanup(), labB.cleanup()]));
  const user = await createTestUser("f2bz-subscriber");
  t.teardown(() => user.remove());

  // The root side of host B: the helper, its socket root:<the user's group> 0660.
  const helperDir = await tempDir(t, "f2bz-helper-");
  await fs.chmod(helperDir, 0o755);
  const socket = path.join(helperDir, "ban.sock");
  const helper = await BanHelperServer.listen({
    socket,
    stateDir: path.join(helperDir, "state"),
    gid: user.gid,
    executor: new Fail2banClient({ client: labB.paths.client }),
    jails: ["f2bz"],
    neverBan: NeverBanList.create({}),
    logger: testLogger(),
  });
  t.teardown(() => helper.close());

  const cluster = await testCluster(t);
  const [a, b] = await Promise.all([cluster.node("a"), cluster.node("b")]);
  await cluster.authorize(a, "monitor");
  await cluster.authorize(b, "subscriber");
  const pub = await startTestPublisher(t, cluster);
  await startTestMonitor(t, cluster, a, { log: labA.paths.log, publishers: [pub.monitorEntry] });

  // What the user's own files must be: its secret key its own and 0600, its state dir writable;
  // the directories on the way traversable (set explicitly: other tests of this process change the
  // umask for a moment while they write secret keys).
  for (const dir of [cluster.dir, path.dirname(b.secretKey)]) await fs.chmod(dir, 0o755);
  await fs.chown(b.secretKey, user.uid, user.gid);
  await fs.chmod(b.secretKey, 0o600);
  await fs.mkdir(b.stateDir, { recursive: true });
  await fs.chmod(path.dirname(b.stateDir), 0o755);
  await fs.chown(b.stateDir, user.uid, user.gid);
  const config = await cluster.configFile(b, {
    subscriber: { publishers: [pub.entry], action: { type: "fail2ban", jail: "f2bz", helper: socket } },
  });
  for (const file of [config, pub.node.publicKey]) await fs.chmod(file, 0o644);

  const daemon = spawnSubscriber(t, config, user);
  await daemon.waitLog("snapshot loaded");
  const status = await fs.readFile(`/proc/${daemon.child.pid}/status`, "utf8");
  t.regex(status, new RegExp(`^Uid:\\s+${user.uid}\\s+${user.uid}\\s+${user.uid}\\s+${user.uid}$`, "m"));

  await labA.fail("192.0.2.141", "sshd-test");
  await labA.fail("2001:db8::141", "sshd-test");
  await labB.waitBanned("f2bz", "192.0.2.141", DEADLINE_MS);
  await labB.waitBanned("f2bz", "2001:db8::141", DEADLINE_MS);
  await waitCounter(
    { get: () => helper.metrics.get("helper_requests_total", { verb: "ban", result: "ok" }) },
    "bans",
  );
  t.is(helper.metrics.get("helper_requests_total", { verb: "ban", result: "failed" }), 0);
  t.truthy(daemon.lines.find((l) => l.msg === "ban applied"));

  daemon.child.kill("SIGTERM");
  t.deepEqual(await daemon.exited, { code: 0, signal: null }, daemon.stderr());
  const state = await fs.stat(path.join(b.stateDir, "subscriber.sqlite3"));
  t.is(state.uid, user.uid, "its state is its own");
});
