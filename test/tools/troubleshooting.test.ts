import { appendFile, copyFile, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import anyTest, { type ExecutionContext } from "ava";
import { revokedDir } from "../../src/keys/store.js";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";
import { type Daemon, spawnDaemon } from "../helpers/cli.js";
import { ANY_PORT, type TestCluster, type TestNode, testCluster } from "../helpers/cluster.js";
import { publisherPorts, startTestPublisher } from "../helpers/publisher.js";

/**
 * README's "Troubleshooting" names, for each case, the log lines an operator sees and which daemon
 * writes them. Each case is provoked here with the built CLI on loopback, and every message the
 * README quotes must be in the real log of that daemon: the README cannot drift from the code.
 */
const README = new URL("../../README.md", import.meta.url);
type Role = "monitor" | "publisher" | "subscriber";

interface Quoted {
  role: Role;
  msg: string;
}

/** `### <case>` headings of the section, each with its `` - `<daemon>` logs `"<msg>"` `` lines. */
function troubleshooting(readme: string): Map<string, Quoted[]> {
  const section = /^## Troubleshooting\n([\s\S]*?)^## /m.exec(readme)?.[1];
  if (section === undefined) throw new Error("README has no '## Troubleshooting' section");
  const cases = new Map<string, Quoted[]>();
  let current: Quoted[] | undefined;
  for (const line of section.split("\n")) {
    const heading = /^### (.+)$/.exec(line);
    if (heading) {
      current = [];
      cases.set(heading[1]!, current);
    }
    const quoted = /^- `(monitor|publisher|subscriber)` logs `"([^"`]+)"`/.exec(line);
    if (quoted) current?.push({ role: quoted[1] as Role, msg: quoted[2]! });
  }
  return cases;
}

async function quotedFor(t: ExecutionContext, title: string): Promise<Quoted[]> {
  const cases = troubleshooting(await readFile(README, "utf8"));
  const quoted = cases.get(title);
  if (quoted === undefined) throw new Error(`README's troubleshooting has no case '${title}'`);
  t.true(quoted.length > 0, `'${title}' quotes no log line`);
  return quoted;
}

/** Waits for every message README quotes for this case in the log of its daemon. */
async function expectQuoted(t: ExecutionContext, title: string, daemons: Partial<Record<Role, Daemon>>) {
  for (const { role, msg } of await quotedFor(t, title)) {
    const daemon = daemons[role];
    if (!daemon) throw new Error(`'${title}': README quotes the ${role}, which this case does not run`);
    const [line] = await daemon.waitLog(msg).catch((error: Error) => {
      t.log(daemon.stdout());
      throw error;
    });
    t.log(role, JSON.stringify(line));
    t.is(line?.msg, msg);
  }
}

/** A `Ban` line as fail2ban 1.0.2 writes it to its log file. */
function banLine(jail: string, ip: string): string {
  const d = new Date();
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const stamp = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())},${p(d.getMilliseconds(), 3)}`;
  return `${stamp} fail2ban.actions        [4242]: NOTICE  [${jail}] Ban ${ip}\n`;
}

const CASES = [
  "A monitor pinned the wrong publisher key",
  "A monitor's key is not authorized",
  "A subscriber was revoked",
  "The monitor's outbox is full",
  "A jail is missing on the subscriber's fail2ban",
];

anyTest("README's troubleshooting has every case, each quoting the log lines of a daemon", async (t) => {
  const cases = troubleshooting(await readFile(README, "utf8"));
  t.deepEqual([...cases.keys()], CASES);
  for (const [title, quoted] of cases) t.true(quoted.length > 0, title);
});

async function cliPublisher(t: ExecutionContext, cluster: TestCluster, node: TestNode) {
  const config = await cluster.configFile(node, {
    publisher: { submit: ANY_PORT, feed: ANY_PORT, snapshot: ANY_PORT, keys: cluster.keysDir },
  });
  const daemon = spawnDaemon(t, ["publisher", "--config", config]);
  const [listening] = await daemon.waitLog("listening");
  const endpoint = (name: string) => String(listening?.[name]);
  return {
    daemon,
    monitorEntry: { submit: endpoint("submit"), key: node.publicKey },
    entry: { feed: endpoint("feed"), snapshot: endpoint("snapshot"), key: node.publicKey },
  };
}

async function cliMonitor(t: ExecutionContext, cluster: TestCluster, node: TestNode, monitor: object) {
  const log = path.join(cluster.dir, `${node.name}-fail2ban.log`);
  await writeFile(log, "");
  const config = await cluster.configFile(node, { monitor: { log, pollInterval: "200ms", ...monitor } });
  const daemon = spawnDaemon(t, ["monitor", "--config", config]);
  await daemon.started("monitor");
  return { daemon, ban: (ip: string) => appendFile(log, banLine("sshd", ip)) };
}

anyTest.serial("a monitor pinned the wrong publisher key", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const [pubNode, web1, other] = await Promise.all(["pub", "web1", "other"].map((n) => cluster.node(n)));
  await cluster.authorize(web1!, "monitor");
  const pub = await cliPublisher(t, cluster, pubNode!);
  const monitor = await cliMonitor(t, cluster, web1!, {
    publishers: [{ submit: pub.monitorEntry.submit, key: other!.publicKey }],
  });
  await monitor.ban("192.0.2.1");
  await expectQuoted(t, "A monitor pinned the wrong publisher key", { monitor: monitor.daemon });
});

anyTest.serial("a monitor whose key is not authorized", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const [pubNode, web1] = await Promise.all(["pub", "web1"].map((n) => cluster.node(n)));
  const pub = await cliPublisher(t, cluster, pubNode!);
  const monitor = await cliMonitor(t, cluster, web1!, { publishers: [pub.monitorEntry] });
  await monitor.ban("192.0.2.2");
  await expectQuoted(t, "A monitor's key is not authorized", {
    monitor: monitor.daemon,
    publisher: pub.daemon,
  });
});

anyTest.serial("a revoked subscriber", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const [pubNode, web2] = await Promise.all(["pub", "web2"].map((n) => cluster.node(n)));
  await cluster.authorize(web2!, "subscriber");
  await copyFile(web2!.publicKey, path.join(revokedDir(cluster.keysDir), "web2.key"));
  const pub = await cliPublisher(t, cluster, pubNode!);
  const config = await cluster.configFile(web2!, {
    subscriber: { publishers: [pub.entry], action: { type: "log" } },
  });
  const subscriber = spawnDaemon(t, ["subscriber", "--config", config]);
  await expectQuoted(t, "A subscriber was revoked", { subscriber, publisher: pub.daemon });
});

anyTest.serial("a full outbox", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const [pubNode, web1] = await Promise.all(["pub", "web1"].map((n) => cluster.node(n)));
  // A publisher that is not running: the ports it had, nobody listening.
  const ports = await publisherPorts(t, cluster, pubNode!);
  const monitor = await cliMonitor(t, cluster, web1!, {
    publishers: [{ submit: ports.submit, key: pubNode!.publicKey }],
    outboxLimit: 2,
  });
  for (const ip of ["192.0.2.3", "192.0.2.4", "192.0.2.5"]) await monitor.ban(ip);
  await monitor.daemon.waitLog("outbox full: publishers are not acknowledging; log reading paused");
  await monitor.daemon.waitLog("no reply from publisher in time: reconnecting and resending");
  // The publisher comes back: the outbox drains and reading resumes.
  await cluster.authorize(web1!, "monitor");
  await startTestPublisher(t, cluster, { name: "pub", publisher: { ...ports } });
  await expectQuoted(t, "The monitor's outbox is full", { monitor: monitor.daemon });
});

const fail2banTest = ensureFail2ban(anyTest.serial as typeof anyTest);

fail2banTest("a jail missing on the subscriber's fail2ban", async (t) => {
  t.timeout(90_000);
  const lab = await startFail2ban({ label: "ts", jails: ["sshd-test"] });
  t.teardown(() => lab.cleanup());
  const cluster = await testCluster(t);
  const [web1, web2] = await Promise.all(["web1", "web2"].map((n) => cluster.node(n)));
  await cluster.authorize(web1!, "monitor");
  await cluster.authorize(web2!, "subscriber");
  const pub = await cliPublisher(t, cluster, await cluster.node("pub"));
  const config = await cluster.configFile(web2!, {
    subscriber: {
      publishers: [pub.entry],
      action: { type: "fail2ban", jail: "f2bz", client: lab.paths.client },
    },
  });
  const subscriber = spawnDaemon(t, ["subscriber", "--config", config]);
  await subscriber.waitLog("snapshot loaded");
  const monitor = await cliMonitor(t, cluster, web1!, { publishers: [pub.monitorEntry] });
  await monitor.ban("192.0.2.6");
  await expectQuoted(t, "A jail is missing on the subscriber's fail2ban", { subscriber });
});
