import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { parseDuration } from "../../src/config/duration.js";
import { knownKeys } from "../../src/config/issues.js";
import { loadConfig, parseConfig } from "../../src/config/load.js";
import { configSchema } from "../../src/config/schema.js";
import { F2bzError } from "../../src/errors.js";
import { tempDir } from "../helpers/temp-dir.js";

const EXAMPLE = fileURLToPath(new URL("../../config/f2bz.example.yaml", import.meta.url));
const FILE = "/etc/f2bz/f2bz.yaml";
const NODE = "node:\n  name: web1\n  identity: keys/web1.key_secret\n";

test("the example config validates, with every section present", async (t) => {
  const config = await loadConfig(EXAMPLE);
  const dir = path.dirname(EXAMPLE);
  t.is(config.node.name, "web1");
  t.is(config.node.identity, path.join(dir, "keys/web1.key_secret"));
  t.truthy(config.publisher);
  t.truthy(config.monitor);
  t.truthy(config.subscriber);
  t.truthy(config.banHelper);
  t.is(config.publisher?.keys, path.join(dir, "keys"));
  t.is(config.monitor?.publishers[0]?.key, path.join(dir, "keys/pub1.key"));
  t.is(config.monitor?.banTimes.recidive, 7 * 24 * 3_600_000);
});

test("the example config listens on loopback only", async (t) => {
  const config = await loadConfig(EXAMPLE);
  for (const endpoint of [
    config.publisher?.submit,
    config.publisher?.feed,
    config.publisher?.snapshot,
    ...(config.monitor?.publishers.map((p) => p.submit) ?? []),
    ...(config.subscriber?.publishers.flatMap((p) => [p.feed, p.snapshot]) ?? []),
  ]) {
    t.regex(endpoint ?? "", /^tcp:\/\/127\.0\.0\.1:\d+$/);
  }
});

test("the example config documents every key the schema knows", async (t) => {
  const text = await readFile(EXAMPLE, "utf8");
  const schema = configSchema("/");
  const sections = knownKeys(schema, []);
  for (const section of sections) {
    t.regex(text, new RegExp(`^${section}:`, "m"), `section ${section}`);
    const nested = section === "subscriber" ? [[section], [section, "action"]] : [[section]];
    for (const objectPath of nested) {
      for (const key of knownKeys(schema, objectPath)) {
        t.regex(text, new RegExp(`^ +(# )?(- )?${key}:`, "m"), `${objectPath.join(".")}.${key}`);
      }
    }
  }
});

test("relative paths resolve against the config file's directory, absolute ones stay", async (t) => {
  const dir = await tempDir(t);
  await mkdir(path.join(dir, "etc"));
  const file = path.join(dir, "etc", "f2bz.yaml");
  await writeFile(
    file,
    `${NODE}  stateDir: ../state\npublisher:\n  keys: /srv/keys\nlogging:\n  file: log/f2bz.log\n`,
  );
  const config = await loadConfig(path.relative(process.cwd(), file));
  t.is(config.node.identity, path.join(dir, "etc", "keys", "web1.key_secret"));
  t.is(config.node.stateDir, path.join(dir, "state"));
  t.is(config.publisher?.keys, "/srv/keys");
  t.is(config.logging.file, path.join(dir, "etc", "log", "f2bz.log"));
});

test("defaults fill in every key of a present section; absent sections stay absent", (t) => {
  const config = parseConfig(
    `${NODE}publisher: {}\nmonitor:\n  publishers: [{ submit: "tcp://127.0.0.1:5678", key: keys/pub1.key }]\n` +
      `subscriber:\n  publishers: [{ feed: "tcp://127.0.0.1:5680", snapshot: "tcp://127.0.0.1:5681", key: keys/pub1.key }]\n`,
    FILE,
  );
  t.is(config.node.stateDir, "/var/lib/f2bz");
  t.deepEqual(config.publisher, {
    submit: "tcp://0.0.0.0:5678",
    feed: "tcp://0.0.0.0:5680",
    snapshot: "tcp://0.0.0.0:5681",
    keys: "/etc/f2bz/keys",
    perOriginRate: 10_000,
    perOriginBurst: 100_000,
    globalRate: 50_000,
    maxPending: 100,
    maxActivePerOrigin: 100_000,
  });
  t.like(config.monitor, {
    log: "/var/log/fail2ban.log",
    source: "file",
    journalUnit: "fail2ban.service",
    ignoreJails: ["f2bz"],
    banTime: 3_600_000,
    banTimes: {},
    ackTimeout: 3000,
    outboxLimit: 100_000,
    pollInterval: 1000,
    unbanHold: 5000,
  });
  t.deepEqual(config.subscriber?.action, {
    type: "fail2ban",
    jail: "f2bz",
    dryRun: false,
    client: "/usr/bin/fail2ban-client",
    timeout: 15_000,
    batchSize: 100,
  });
  t.deepEqual(config.subscriber?.neverBan, []);
  t.deepEqual(config.events, { window: 120_000, allowCidr: false, maxBanTime: 30 * 86_400_000 });
  t.deepEqual(config.logging, { level: "info" });
  t.is(config.banHelper, undefined);
});

test("metrics: loopback addresses only, per process overriding listen", (t) => {
  const config = parseConfig(
    `${NODE}metrics:\n  listen: 127.0.0.1:9464\n  monitor: 127.8.9.10:9465\n  banHelper: "[::1]:65535"\n`,
    FILE,
  );
  t.deepEqual(config.metrics, {
    listen: { host: "127.0.0.1", port: 9464 },
    monitor: { host: "127.8.9.10", port: 9465 },
    banHelper: { host: "::1", port: 65_535 },
  });
  t.is(parseConfig(NODE, FILE).metrics, undefined);
  // Port 0: any free port, which the daemon logs.
  t.deepEqual(parseConfig(`${NODE}publisher: {}\nmetrics:\n  listen: 127.0.0.1:0\n`, FILE).metrics, {
    listen: { host: "127.0.0.1", port: 0 },
  });
  for (const bad of [
    "192.0.2.1:9464",
    "::1:9464",
    "[::2]:9464",
    "[::ffff:127.0.0.1]:9464",
    "127.0.0.1",
    "127.0.0.1:65536",
    "127.0.0.1:+80",
    "127.1:9464",
    "[fe80::1%lo]:9464",
  ]) {
    const error = t.throws(() => parseConfig(`${NODE}metrics:\n  listen: "${bad}"\n`, FILE), {
      instanceOf: F2bzError,
    });
    t.regex(error?.message ?? "", /'metrics\.listen': expected a loopback address/, bad);
  }
});

test("durations: units, bare seconds, and what is refused", (t) => {
  t.is(parseDuration("250ms"), 250);
  t.is(parseDuration("30s"), 30_000);
  t.is(parseDuration("10m"), 600_000);
  t.is(parseDuration("1h"), 3_600_000);
  t.is(parseDuration("7d"), 604_800_000);
  t.is(parseDuration("2w"), 1_209_600_000);
  t.is(parseDuration(90), 90_000);
  t.is(parseDuration(" 5s "), 5000);
  for (const bad of ["1 hour", "1.5h", "-1s", "1", "h", "", "1y", "1H", "0x10s", "1234567890s"]) {
    t.is(parseDuration(bad), undefined, bad);
  }
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) t.is(parseDuration(bad), undefined);
});

/** [what, yaml, line, message after "line N: "] */
const errors: [string, string, number, string][] = [
  [
    "a bad duration, at its line",
    `${NODE}monitor:\n  banTime: 1 hour\n  publishers: []\n`,
    5,
    "'monitor.banTime': expected a duration such as 30s, 10m, 1h or 7d, found '1 hour'",
  ],
  [
    "an unknown key (a typo), at its line, with a suggestion",
    "node:\n  name: web1\n  identty: keys/web1.key_secret\n",
    3,
    "'node.identty': unknown key (did you mean 'identity'?), expected one of name, identity, stateDir",
  ],
  [
    "an unknown section",
    `${NODE}\nsubscribr:\n  publishers: []\n`,
    5,
    "'subscribr': unknown key (did you mean 'subscriber'?), expected one of node, publisher, monitor, subscriber, banHelper, events, metrics, logging",
  ],
  ["a missing required key", "node:\n  name: web1\n", 1, "'node.identity': missing, expected a string"],
  ["a missing node section", "logging: {}\n", 1, "'node': missing, expected a mapping"],
  ["an empty file", "", 1, "'node': missing, expected a mapping"],
  [
    "a wrong type: a list for a string",
    "node:\n  name: [web1]\n  identity: k\n",
    2,
    "'node.name': expected a string, found a list",
  ],
  [
    "a wrong type: a string for a number",
    `${NODE}publisher:\n  globalRate: "500"\n`,
    5,
    "'publisher.globalRate': expected a number, found '500'",
  ],
  [
    "a wrong type: a string for a boolean",
    `${NODE}events:\n  allowCidr: "yes"\n`,
    5,
    "'events.allowCidr': expected true or false, found 'yes'",
  ],
  [
    "an empty value",
    "node:\n  name: web1\n  identity:\n",
    3,
    "'node.identity': expected a string, found an empty value",
  ],
  [
    "a number out of range",
    `${NODE}publisher:\n  perOriginRate: 0\n`,
    5,
    "'publisher.perOriginRate': expected more than 0, found 0",
  ],
  [
    "a value not in the list",
    `${NODE}logging:\n  level: loud\n`,
    5,
    "'logging.level': expected one of 'fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent', found 'loud'",
  ],
  [
    "a bad endpoint",
    `${NODE}publisher:\n  submit: "tcp://*"\n`,
    5,
    "'publisher.submit': expected an endpoint such as tcp://192.0.2.1:5678 or ipc:///run/f2bz/feed, found 'tcp://*'",
  ],
  [
    "an exec action without command",
    `${NODE}subscriber:\n  publishers:\n    - { feed: "tcp://127.0.0.1:5680", snapshot: "tcp://127.0.0.1:5681", key: k }\n  action:\n    type: exec\n`,
    7,
    "'subscriber.action.command': missing, expected action.type 'exec' needs action.command, an argv array",
  ],
  [
    "an empty publisher list",
    `${NODE}monitor:\n  publishers: []\n`,
    5,
    "'monitor.publishers': expected at least one entry, found an empty list",
  ],
  [
    "a key missing inside a list entry",
    `${NODE}monitor:\n  publishers:\n    - submit: "tcp://127.0.0.1:5678"\n`,
    6,
    "'monitor.publishers[0].key': missing, expected a string",
  ],
  [
    "a bad jail name as a mapping key",
    `${NODE}monitor:\n  banTimes:\n    "a;b": 1h\n  publishers: [{ submit: "tcp://127.0.0.1:5678", key: k }]\n`,
    6,
    "'monitor.banTimes.a;b': expected a jail name of letters, digits, '.', '_' or '-' (at most 32), found 'a;b'",
  ],
  ["a top level that is not a mapping", "- node\n", 1, "'(top level)': expected a mapping, found a list"],
  [
    "invalid yaml: an unterminated quote, at the line where it opens",
    'logging:\n  level: "info"\nnode:\n  name: "web1\n  identity: k\n',
    4,
    'invalid yaml: missing closing "quote',
  ],
  [
    "invalid yaml: an unterminated single quote",
    "node:\n  name: web1\n  identity: 'k\n\n",
    3,
    "invalid yaml: missing closing 'quote",
  ],
  [
    "invalid yaml: bad indentation",
    "node:\n  name: web1\n identity: k\n",
    3,
    "invalid yaml: all mapping items must start at the same column",
  ],
  [
    "invalid yaml: a tab as indentation",
    "node:\n\tname: web1\n",
    2,
    "invalid yaml: tabs are not allowed as indentation",
  ],
  [
    "invalid yaml: a duplicate key",
    "node:\n  name: web1\n  name: web2\n",
    3,
    "invalid yaml: duplicate key 'name'",
  ],
  [
    "an alias",
    "node: &n\n  name: web1\n  identity: k\nlogging: *n\n",
    4,
    "invalid yaml: aliases (*name) are not supported",
  ],
  [
    "metrics on a non-loopback address",
    `${NODE}metrics:\n  listen: 0.0.0.0:9464\n`,
    5,
    "'metrics.listen': expected a loopback address and port such as 127.0.0.1:9464 or [::1]:9464, found '0.0.0.0:9464'",
  ],
  [
    "metrics on a host name",
    `${NODE}metrics:\n  monitor: localhost:9465\n`,
    5,
    "'metrics.monitor': expected a loopback address and port such as 127.0.0.1:9464 or [::1]:9464, found 'localhost:9465'",
  ],
  [
    "metrics on a port above 65535",
    `${NODE}metrics:\n  listen: "[::1]:65536"\n`,
    5,
    "'metrics.listen': expected a loopback address and port such as 127.0.0.1:9464 or [::1]:9464, found '[::1]:65536'",
  ],
  [
    "metrics as a bare port",
    `${NODE}metrics:\n  listen: 9464\n`,
    5,
    "'metrics.listen': expected a string, found 9464",
  ],
  [
    "a duration below its bound",
    `${NODE}monitor:\n  ackTimeout: 0s\n  publishers: [{ submit: "tcp://127.0.0.1:5678", key: k }]\n`,
    5,
    "'monitor.ackTimeout': expected a duration from 100ms to 10m, found '0s'",
  ],
  [
    "a duration past the clock's range",
    `${NODE}events:\n  maxBanTime: 999999999w\n`,
    5,
    "'events.maxBanTime': expected a duration from 1s to 365d, found '999999999w'",
  ],
  [
    "a per-jail ban time of zero",
    `${NODE}monitor:\n  banTimes:\n    sshd: 0s\n  publishers: [{ submit: "tcp://127.0.0.1:5678", key: k }]\n`,
    6,
    "'monitor.banTimes.sshd': expected a duration from 1s to 365d, found '0s'",
  ],
  [
    "a count out of range",
    `${NODE}publisher:\n  maxPending: 1000000\n`,
    5,
    "'publisher.maxPending': expected at most 100000, found 1000000",
  ],
  [
    "brackets around something else than an IPv6 address",
    `${NODE}publisher:\n  submit: "tcp://[192.0.2.1]:5678"\n`,
    5,
    "'publisher.submit': expected an IPv6 address inside the brackets, found 'tcp://[192.0.2.1]:5678'",
  ],
  [
    "an IPv6 bind wildcard as a connect address",
    `${NODE}monitor:\n  publishers: [{ submit: "tcp://[::]:5678", key: k }]\n`,
    5,
    "'monitor.publishers[0].submit': expected an address and port to connect to, not a bind wildcard ('*', 0.0.0.0 or [::]), found 'tcp://[::]:5678'",
  ],
  [
    "a connect address without a port",
    `${NODE}monitor:\n  publishers: [{ submit: "tcp://192.0.2.1:*", key: k }]\n`,
    5,
    "'monitor.publishers[0].submit': expected an address and port to connect to, not a bind wildcard ('*', 0.0.0.0 or [::]), found 'tcp://192.0.2.1:*'",
  ],
  [
    "a publisher listed twice by the subscriber",
    `${NODE}subscriber:\n  publishers:\n    - { feed: "tcp://192.0.2.1:5680", snapshot: "tcp://192.0.2.1:5681", key: k }\n` +
      `    - { feed: "tcp://192.0.2.2:5680", snapshot: "tcp://192.0.2.1:5681", key: k }\n`,
    7,
    "'subscriber.publishers[1].snapshot': expected an endpoint not already named by 'subscriber.publishers[0].snapshot', found 'tcp://192.0.2.1:5681'",
  ],
  [
    "a port clash with a default, reported at the key the file writes",
    `${NODE}publisher:\n  submit: tcp://127.0.0.1:5680\n`,
    5,
    "'publisher.submit': expected a port that 'publisher.feed' does not use (tcp://0.0.0.0:5680), found 'tcp://127.0.0.1:5680'",
  ],
  [
    "a metrics port equal to a default publisher port",
    `${NODE}publisher: {}\nmetrics:\n  publisher: 127.0.0.1:5681\n`,
    6,
    "'metrics.publisher': expected a port that 'publisher.snapshot' does not use (tcp://0.0.0.0:5681), found '127.0.0.1:5681'",
  ],
  [
    "two documents",
    `${NODE}---\n${NODE}`,
    4,
    "invalid yaml: expected a single document, found a second '---'",
  ],
];

for (const [what, yaml, line, message] of errors) {
  test(`config error names file, line and key: ${what}`, (t) => {
    const error = t.throws(() => parseConfig(yaml, FILE), { instanceOf: F2bzError });
    t.is(error?.code, "CONFIG_INVALID");
    t.is(error?.message, `config '${FILE}' line ${line}: ${message}`);
    t.false(error?.message.includes("\n"));
  });
}

test("bounds and endpoints: what is at the edge is accepted", (t) => {
  const config = parseConfig(
    `${NODE}publisher:\n  submit: "tcp://[::]:5678"\n  feed: "tcp://*:*"\n  snapshot: ipc:///run/f2bz/snapshot\n` +
      "  perOriginRate: 0.5\n  maxPending: 0\n" +
      `monitor:\n  unbanHold: 0s\n  banTime: 365d\n  publishers: [{ submit: "tcp://[2001:db8::1]:5678", key: k }]\n` +
      "events:\n  window: 1d\n  maxBanTime: 1s\n" +
      // Two daemons, two metrics ports, neither a publisher port (the [::] bind takes them all).
      "metrics:\n  listen: 127.0.0.1:9464\n  monitor: 127.0.0.1:9465\n",
    FILE,
  );
  t.is(config.monitor?.unbanHold, 0);
  t.is(config.events.window, 86_400_000);
  t.is(config.events.maxBanTime, 1000);
  t.is(config.publisher?.perOriginRate, 0.5);
  t.is(config.publisher?.feed, "tcp://*:*");
});

test("never-ban and peer entries: addresses, ranges of any prefix, names for peers", (t) => {
  const config = parseConfig(
    `${NODE}subscriber:\n  publishers:\n    - { feed: "tcp://192.0.2.1:5680", snapshot: "tcp://192.0.2.1:5681", key: k }\n` +
      '  neverBan: [10.0.0.0/8, "2001:db8::/32", 0.0.0.0/0]\n  peers: [web2.example.net, 198.51.100.7/24, "2001:db8::5"]\n' +
      "  action:\n    type: exec\n    command: [/usr/local/sbin/block, '{kind}', '--ip={ip}', '{jail}', '{origin}', '{expires}']\n",
    FILE,
  );
  t.deepEqual(config.subscriber?.neverBan, ["10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0"]);
  t.is(config.subscriber?.peers.length, 3);
});

test("a missing config file is CONFIG_NOT_FOUND and names the file", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "nope.yaml");
  const error = await t.throwsAsync(loadConfig(file), { instanceOf: F2bzError });
  t.is(error?.code, "CONFIG_NOT_FOUND");
  t.is(error?.message, `config file '${file}' does not exist`);
});
