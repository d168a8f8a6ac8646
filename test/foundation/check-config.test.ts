import { chmod, copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import test, { type ExecutionContext } from "ava";
import { loadSecretIdentity } from "../../src/keys/files.js";
import { type CliResult, runCli, spawnDaemon } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp-dir.js";

const EXAMPLE = fileURLToPath(new URL("../../config/f2bz.example.yaml", import.meta.url));

function oneLine(
  t: { is: (a: unknown, b: unknown, m?: string) => void; false: (v: boolean, m?: string) => void },
  r: CliResult,
) {
  t.is(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
  t.false(r.stderr.includes("    at "), r.stderr);
  t.false(r.stderr.includes("internal error"), r.stderr);
}

/** Identities written once per run by keygen (two CLI runs are slow on a loaded machine). */
let generated: string | undefined;
test.before(async () => {
  generated = await mkdtemp(path.join(tmpdir(), "f2bz-keys-"));
  for (const name of ["web1", "pub1"]) {
    const r = await runCli(["keygen", "--name", name, "--dir", generated]);
    if (r.code !== 0) throw new Error(r.stderr);
  }
});
test.after.always(() => (generated ? rm(generated, { recursive: true, force: true }) : undefined));

/** A config directory as an operator sets it up: the config file, keys/ with real identities. */
async function setup(t: ExecutionContext) {
  const dir = await tempDir(t);
  const keys = path.join(dir, "keys");
  // A copy keeps the modes keygen gave (0600 secrets); each test may then break its own copy.
  await cp(generated!, keys, { recursive: true });
  const config = path.join(dir, "f2bz.yaml");
  await copyFile(EXAMPLE, config);
  return { dir, keys, config };
}

test("check-config accepts the example config with real keys next to it, from any directory", async (t) => {
  const { dir, config } = await setup(t);
  const elsewhere = await tempDir(t);
  const r = await runCli(["check-config", "--config", config], { cwd: elsewhere });
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, "");
  const id = await loadSecretIdentity(path.join(dir, "keys", "web1.key_secret"));
  t.is(
    r.stdout,
    `${config}: ok; node web1 (${id.nodeId}); publisher (0 monitors, 0 subscribers, 0 revoked), ` +
      "monitor (1 publishers), subscriber (1 publishers, action fail2ban), ban-helper\n",
  );
});

test("check-config also takes -c and counts authorized keys", async (t) => {
  const { dir, keys } = await setup(t);
  const add = await runCli(["keys", "add", "subscriber", path.join(keys, "web1.key"), "--keys", keys]);
  t.is(add.code, 0, add.stderr);
  const r = await runCli(["check-config", "-c", "f2bz.yaml"], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /publisher \(0 monitors, 1 subscribers, 0 revoked\)/);
  t.true(r.stdout.startsWith("f2bz.yaml: ok; node web1 "), r.stdout);
});

test("check-config refuses two publishers pinning one key, as the monitor does", async (t) => {
  const { config } = await setup(t);
  const entry = "    - submit: tcp://127.0.0.1:5678\n      key: keys/pub1.key\n";
  const text = await readFile(config, "utf8");
  t.true(text.includes(entry));
  await writeFile(
    config,
    text.replace(entry, `${entry}    - submit: tcp://127.0.0.1:6678\n      key: keys/pub1.key\n`),
  );
  const r = await runCli(["check-config", "--config", config]);
  t.is(r.code, 78, r.stderr);
  oneLine(t, r);
  t.regex(
    r.stderr,
    /monitor\.publishers\[1\] pins the same key as monitor\.publishers\[0\] \('.*pub1\.key'\)/,
  );
});

test("check-config refuses a broken file with one line: file, line, key", async (t) => {
  const { config } = await setup(t);
  await writeFile(
    config,
    "node:\n  name: web1\n  identity: keys/web1.key_secret\nmonitor:\n  banTime: soon\n",
  );
  const r = await runCli(["check-config", "--config", config]);
  t.is(r.code, 78);
  oneLine(t, r);
  t.is(
    r.stderr,
    `f2bz check-config: config '${config}' line 5: 'monitor.banTime': expected a duration such as 30s, 10m, 1h or 7d, found 'soon'\n`,
  );
  t.is(r.stdout, "");
});

test("check-config refuses invalid yaml with one line", async (t) => {
  const { config } = await setup(t);
  await writeFile(config, "node:\n  name: web1\n\tidentity: x\n");
  const r = await runCli(["check-config", "--config", config]);
  t.is(r.code, 78);
  oneLine(t, r);
  t.regex(r.stderr, /line 3: invalid yaml: /);
});

test("check-config refuses a missing file with one line", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "missing.yaml");
  const r = await runCli(["check-config", "--config", file]);
  t.is(r.code, 66);
  oneLine(t, r);
  t.is(r.stderr, `f2bz check-config: config file '${file}' does not exist\n`);
});

test("check-config refuses a secret key with bad permissions, as ssh does", async (t) => {
  const { keys, config } = await setup(t);
  const secret = path.join(keys, "web1.key_secret");
  await chmod(secret, 0o644);
  const r = await runCli(["check-config", "--config", config]);
  t.is(r.code, 77);
  oneLine(t, r);
  t.is(r.stderr, `f2bz check-config: key file '${secret}' has mode 0644, expected 0600\n`);
});

test("check-config refuses a pinned publisher key that is missing or holds a secret", async (t) => {
  const { keys, config } = await setup(t);
  await copyFile(path.join(keys, "pub1.key_secret"), path.join(keys, "pub1.key"));
  const r = await runCli(["check-config", "--config", config]);
  t.is(r.code, 65);
  oneLine(t, r);
  t.regex(r.stderr, /pub1\.key' contains a secret key, expected a public certificate\n$/);
});

test("check-config refuses an authorized key file that holds a secret", async (t) => {
  const { keys, config } = await setup(t);
  await mkdir(path.join(keys, "authorized", "monitors"), { recursive: true });
  await copyFile(path.join(keys, "web1.key_secret"), path.join(keys, "authorized", "monitors", "web1.key"));
  const r = await runCli(["check-config", "--config", config]);
  t.is(r.code, 65);
  oneLine(t, r);
  t.regex(r.stderr, /authorized\/monitors\/web1\.key' contains a secret key/);
});

test("check-config loads the monitor keys named by subscriber.origins, refusing a secret among them", async (t) => {
  const { dir, keys, config } = await setup(t);
  const origins = path.join(dir, "origins");
  await mkdir(origins);
  await copyFile(path.join(keys, "web1.key"), path.join(origins, "web1.key"));
  const text = (await import("node:fs/promises")).readFile(config, "utf8");
  await writeFile(config, (await text).replace(/^subscriber:\n/m, "subscriber:\n  origins: origins\n"));
  t.is((await runCli(["check-config", "--config", config])).code, 0);
  await copyFile(path.join(keys, "pub1.key_secret"), path.join(origins, "pub1.key"));
  const r = await runCli(["check-config", "--config", config]);
  t.is(r.code, 65);
  oneLine(t, r);
  t.regex(r.stderr, /origins\/pub1\.key' contains a secret key, expected a public certificate\n$/);
});

/** The 1-based line of the first line of `text` that contains `needle` outside a comment. */
const lineOf = (text: string, needle: string) =>
  text.split("\n").findIndex((l) => !l.trimStart().startsWith("#") && l.includes(needle)) + 1;

/** Replaces exactly one occurrence, so that a change of the example cannot turn a case into a no-op. */
function replaceOnce(text: string, from: string, to: string): string {
  const at = text.indexOf(from);
  if (at === -1 || text.indexOf(from, at + 1) !== -1) throw new Error(`'${from}' is not in the example once`);
  return text.slice(0, at) + to + text.slice(at + from.length);
}

/**
 * [what, edit of the example, text of the line to report, message after "line N: "]. Each was
 * accepted by check-config (or refused by a daemon only, without file or line) before the schema
 * checked it.
 */
const refusals: [string, (text: string) => string, string, string][] = [
  [
    "a zero replay window",
    (s) => replaceOnce(s, "window: 2m", "window: 0s"),
    "window: 0s",
    "'events.window': expected a duration from 1s to 1d, found '0s'",
  ],
  [
    "a zero maxBanTime",
    (s) => replaceOnce(s, "maxBanTime: 30d", "maxBanTime: 0s"),
    "maxBanTime: 0s",
    "'events.maxBanTime': expected a duration from 1s to 365d, found '0s'",
  ],
  [
    "a rate of 1e308",
    (s) => replaceOnce(s, "globalRate: 50000", "globalRate: 1e308"),
    "globalRate: 1e308",
    "'publisher.globalRate': expected at most 1000000, found 1e+308",
  ],
  [
    "a publisher listed twice by the monitor",
    (s) =>
      replaceOnce(
        s,
        "    - submit: tcp://127.0.0.1:5678\n      key: keys/pub1.key\n",
        "    - submit: tcp://127.0.0.1:5678\n      key: keys/pub1.key\n    - submit: tcp://127.0.0.1:5678 # twice\n      key: keys/pub1.key\n",
      ),
    "# twice",
    "'monitor.publishers[1].submit': expected an endpoint not already named by 'monitor.publishers[0].submit', found 'tcp://127.0.0.1:5678'",
  ],
  [
    "a never-ban range with host bits",
    (s) => replaceOnce(s, "neverBan: [192.0.2.10, 198.51.100.0/24]", "neverBan: [192.0.2.10, 10.0.0.1/8]"),
    "10.0.0.1/8",
    "'subscriber.neverBan[1]': expected an address or a range without host bits such as 10.0.0.0/8, found '10.0.0.1/8'",
  ],
  [
    "a ban-helper never-ban entry that is no address",
    (s) => replaceOnce(s, "neverBan: [192.0.2.10]", "neverBan: [192.0.2.300]"),
    "192.0.2.300",
    "'banHelper.neverBan[0]': expected an address or a range without host bits, found '192.0.2.300'",
  ],
  [
    "a peer that is neither an address, a range nor a name",
    (s) => replaceOnce(s, "peers: [203.0.113.5]", "peers: [203.0.113.5/33]"),
    "203.0.113.5/33",
    "'subscriber.peers[0]': expected an address, a range or a host name, found '203.0.113.5/33'",
  ],
  [
    "an exec template whose program is not an absolute path",
    (s) => replaceOnce(s, "    type: fail2ban\n", '    type: exec\n    command: [block, "{ip}"]\n'),
    "command: [block",
    "'subscriber.action.command[0]': expected the absolute path of a program, without placeholders, found 'block'",
  ],
  [
    "an exec template with an unknown placeholder",
    (s) =>
      replaceOnce(
        s,
        "    type: fail2ban\n",
        '    type: exec\n    command: [/usr/local/sbin/block, "{address}"]\n',
      ),
    "command: [/usr",
    "'subscriber.action.command[1]': expected only the placeholders {kind}, {jail}, {ip}, {origin} or {expires}, found '{address}'",
  ],
  [
    "port 99999",
    (s) => replaceOnce(s, "\n  submit: tcp://127.0.0.1:5678\n", "\n  submit: tcp://127.0.0.1:99999\n"),
    ":99999",
    "'publisher.submit': expected a port from 1 to 65535, found 'tcp://127.0.0.1:99999'",
  ],
  [
    "a bind wildcard as the monitor's connect address",
    (s) => replaceOnce(s, "- submit: tcp://127.0.0.1:5678", '- submit: "tcp://*:5678"'),
    "tcp://*:5678",
    "'monitor.publishers[0].submit': expected an address and port to connect to, not a bind wildcard ('*', 0.0.0.0 or [::]), found 'tcp://*:5678'",
  ],
  [
    "0.0.0.0 as the subscriber's feed",
    (s) => replaceOnce(s, "- feed: tcp://127.0.0.1:5680", "- feed: tcp://0.0.0.0:5680"),
    "- feed: tcp://0.0.0.0:5680",
    "'subscriber.publishers[0].feed': expected an address and port to connect to, not a bind wildcard ('*', 0.0.0.0 or [::]), found 'tcp://0.0.0.0:5680'",
  ],
  [
    "publisher.submit and publisher.feed on one port",
    (s) => replaceOnce(s, "\n  feed: tcp://127.0.0.1:5680\n", "\n  feed: tcp://0.0.0.0:5678\n"),
    "feed: tcp://0.0.0.0:5678",
    "'publisher.feed': expected a port that 'publisher.submit' does not use (tcp://127.0.0.1:5678), found 'tcp://0.0.0.0:5678'",
  ],
  [
    "a metrics port equal to the publisher's snapshot port",
    (s) => replaceOnce(s, "  monitor: 127.0.0.1:9465", "  monitor: 127.0.0.1:5681"),
    "monitor: 127.0.0.1:5681",
    "'metrics.monitor': expected a port that 'publisher.snapshot' does not use (tcp://127.0.0.1:5681), found '127.0.0.1:5681'",
  ],
  [
    "two daemons serving metrics at metrics.listen",
    (s) => replaceOnce(s, "  monitor: 127.0.0.1:9465\n", ""),
    "listen: 127.0.0.1:9464",
    "'metrics.listen': expected one daemon per port, not publisher and monitor (give each its own metrics.<daemon>), found '127.0.0.1:9464'",
  ],
];

// Serial: one CLI process at a time, so that a loaded machine cannot push a run past its deadline.
for (const [what, edit, needle, message] of refusals) {
  test.serial(
    `check-config refuses ${what}: exit 78, one line with file, line, key, expected and found`,
    async (t) => {
      const { config } = await setup(t);
      const text = edit(await readFile(config, "utf8"));
      await writeFile(config, text);
      const r = await runCli(["check-config", "--config", config]);
      t.is(r.code, 78, r.stdout);
      oneLine(t, r);
      t.is(r.stderr, `f2bz check-config: config '${config}' line ${lineOf(text, needle)}: ${message}\n`);
      t.is(r.stdout, "");
    },
  );
}

/** The example with its state in the test's directory, so that a daemon that did start stays inside it. */
async function daemonSetup(t: ExecutionContext) {
  const { dir, config } = await setup(t);
  const text = replaceOnce(
    await readFile(config, "utf8"),
    "stateDir: /var/lib/f2bz",
    `stateDir: ${dir}/state`,
  );
  await writeFile(config, text);
  return { dir, config, text };
}

const refusal = (what: string) => {
  const found = refusals.find((r) => r[0] === what);
  if (!found) throw new Error(`no case '${what}'`);
  return found;
};

const daemonRefusals: [string, ReturnType<typeof refusal>][] = [
  ["monitor", refusal("a publisher listed twice by the monitor")],
  ["subscriber", refusal("a never-ban range with host bits")],
  ["publisher", refusal("publisher.submit and publisher.feed on one port")],
];

for (const [command, [what, edit, needle, message]] of daemonRefusals) {
  test.serial(
    `f2bz ${command} refuses ${what} as check-config does: exit 78, one line with file and line`,
    async (t) => {
      const { config, text } = await daemonSetup(t);
      const edited = edit(text);
      await writeFile(config, edited);
      const line = `config '${config}' line ${lineOf(edited, needle)}: ${message}`;
      const check = await runCli(["check-config", "--config", config]);
      t.is(check.stderr, `f2bz check-config: ${line}\n`);
      const r = await runCli([command, "--config", config], { timeoutMs: 20_000 });
      t.false(r.timedOut, "the daemon started");
      t.is(r.code, 78);
      oneLine(t, r);
      t.is(r.stderr, `f2bz ${command}: ${line}\n`);
    },
  );
}

test.serial(
  "check-config refuses a banHelper.group that does not exist, as the ban-helper does",
  async (t) => {
    const { config } = await setup(t);
    const text = replaceOnce(
      await readFile(config, "utf8"),
      "  # group: f2bz\n",
      "  group: f2bz-no-such-group\n",
    );
    await writeFile(config, text);
    const r = await runCli(["check-config", "--config", config]);
    t.is(r.code, 78, r.stdout);
    oneLine(t, r);
    t.is(r.stderr, "f2bz check-config: group 'f2bz-no-such-group' does not exist in '/etc/group'\n");
  },
);

test.serial(
  "check-config warns, exit 0, when publisher.keys or subscriber.origins names no directory",
  async (t) => {
    const { dir, config } = await setup(t);
    let text = replaceOnce(await readFile(config, "utf8"), "\n  keys: keys\n", "\n  keys: missing-keys\n");
    text = replaceOnce(text, "  # origins: keys/authorized/monitors\n", "  origins: missing-origins\n");
    await writeFile(config, text);
    const r = await runCli(["check-config", "--config", config]);
    t.is(r.code, 0, r.stderr);
    t.is(
      r.stderr,
      `warning: config '${config}': 'publisher.keys' names directory '${dir}/missing-keys', which does not exist: no monitor or subscriber is admitted\n` +
        `warning: config '${config}': 'subscriber.origins' names directory '${dir}/missing-origins', which does not exist: every event is refused as unauthorized\n`,
    );
    t.regex(r.stdout, /: ok; node web1 /);
  },
);

test.serial(
  "f2bz publisher logs the warning check-config prints for a missing publisher.keys, and starts",
  async (t) => {
    const { dir, config } = await setup(t);
    await writeFile(
      config,
      [
        `node: { name: web1, identity: keys/web1.key_secret, stateDir: ${dir}/state }`,
        'publisher: { submit: "tcp://127.0.0.1:*", feed: "tcp://127.0.0.1:*", snapshot: "tcp://127.0.0.1:*", keys: missing-keys }',
        "logging: { level: info }",
        "",
      ].join("\n"),
    );
    const message = `config '${config}': 'publisher.keys' names directory '${dir}/missing-keys', which does not exist: no monitor or subscriber is admitted`;
    const check = await runCli(["check-config", "--config", config]);
    t.is(check.code, 0, check.stderr);
    t.is(check.stderr, `warning: ${message}\n`);
    const daemon = spawnDaemon(t, ["publisher", "--config", config]);
    await daemon.started("publisher");
    const warning = daemon
      .stdout()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .find((l) => l.level === 40);
    t.is(warning?.msg, message);
    t.is(await daemon.stop(), 0);
  },
);
