import { promises as fs } from "node:fs";
import path from "node:path";
import anyTest from "ava";
import { MAX_LINE_BYTES } from "../../src/fail2ban/helper-protocol.js";
import { openDir, rawRequest } from "../ban-helper/helpers.js";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";
import { spawnDaemon } from "../helpers/cli.js";
import { rssBytes } from "../helpers/proc.js";
import { metricsPort, request } from "../metrics/helpers.js";
import { changes, family, MESSAGES, parseSamples, RSS_BOUND_BYTES } from "./helpers.js";
import { fuzzSeed, type Rng, rng } from "./mutate.js";

const test = ensureFail2ban(anyTest);
const seed = fuzzSeed();
const replay = `F2BZ_FUZZ_SEED=${seed} npx ava test/fuzz/ban-helper.test.ts`;

/** The one IPv4 range the helper may ban: everything else is on its never-ban list. */
const OPEN = "198.51.100";

/**
 * The never-ban ranges that leave exactly OPEN.0/24 bannable: for each of its 24 prefix bits, the
 * range that agrees up to that bit and differs at it; plus the IPv6 ranges that the mutations of 2001:db8::7 reach. So a mutated line
 * reaches fail2ban-client only when it lands in OPEN.0/24, and the fuzz run stays fast.
 */
function everythingBut(prefix: string): string[] {
  const bits = prefix.split(".").reduce((n, octet) => n * 256 + Number(octet), 0) * 256;
  const ranges: string[] = [];
  for (let i = 0; i < 24; i++) {
    const unit = 2 ** (31 - i);
    const start = (Math.floor(bits / unit) ^ 1) * unit;
    ranges.push(`${[24, 16, 8, 0].map((s) => Math.floor(start / 2 ** s) % 256).join(".")}/${i + 1}`);
  }
  // Not ::/0: it holds IPv4 too (as mapped addresses), and would close OPEN.0/24 again.
  return [...ranges, "2000::/3", "8000::/1"];
}

const VALID = [
  `BAN f2bz 192.0.2.7`,
  `BAN f2bz 192.0.2.7 2001:db8::7 ${OPEN}.7`,
  `UNBAN f2bz 192.0.2.7`,
  `UNBAN f2bz 10.0.0.1 10.0.0.2`,
];
const WORDS = [
  "BAN",
  "UNBAN",
  "ban",
  "f2bz",
  "sshd",
  "../f2bz",
  "127.0.0.1",
  "0.0.0.0/0",
  "::1",
  "1.2.3.4/8",
  "$(id)",
  "*",
];

/** A request line, mutated at the byte or word level; the newline and line count are mutated too. */
function fuzzLine(r: Rng): Buffer {
  let text = r.pick(VALID);
  const words = text.split(" ");
  switch (r.int(8)) {
    case 0:
      words.splice(r.int(words.length + 1), 0, r.pick(WORDS));
      text = words.join(" ");
      break;
    case 1:
      words.splice(r.int(words.length), 1);
      text = words.join(" ");
      break;
    case 2:
      text = words.join(r.pick(["  ", "\t", " \0", "\r"]));
      break;
    case 3:
      text = `BAN f2bz ${Array.from({ length: 90 + r.int(30) }, (_, i) => `192.0.2.${i & 255}`).join(" ")}`;
      break;
    default:
      break;
  }
  let line: Buffer = Buffer.from(`${text}\n`, "latin1");
  const rounds = r.int(4);
  for (let i = 0; i < rounds; i++) {
    switch (r.int(7)) {
      case 0: {
        const at = r.int(line.length);
        line[at] = line[at]! ^ (1 << r.int(8));
        break;
      }
      case 1:
        line = line.subarray(0, r.int(line.length + 1));
        break;
      case 2:
        line = Buffer.concat([line, line]);
        break;
      case 3:
        line = Buffer.concat([
          line.subarray(0, -1),
          Buffer.alloc(MAX_LINE_BYTES - 8 + r.int(16), 0x41),
          Buffer.from("\n"),
        ]);
        break;
      case 4:
        line = Buffer.concat([line, r.bytes(r.int(40))]);
        break;
      case 5:
        line = r.bytes(r.int(200));
        break;
      default:
        line = Buffer.from(
          line.toString("latin1").replace(/\d+/, () => String(r.int(1000))),
          "latin1",
        );
    }
  }
  return Buffer.from(line);
}

test("fuzz ban-helper: every mutated line gets one answer and one count, fail2ban sees nothing of them", async (t) => {
  t.timeout(300_000);
  t.log(`seed ${seed} (${replay})`);
  const lab = await startFail2ban({ jails: ["f2bz", "sshd"] });
  t.teardown(() => lab.cleanup());
  const dir = await openDir(t, "f2bz-fuzz");
  const socket = path.join(dir, "ban.sock");
  const config = path.join(dir, "f2bz.yaml");
  await fs.writeFile(
    config,
    [
      "node: { name: fuzz, identity: keys/fuzz.key_secret }",
      "banHelper:",
      `  socket: ${socket}`,
      `  client: ${lab.paths.client}`,
      // The test runs as root: the group that may connect.
      "  group: root",
      "  jails: [f2bz]",
      `  stateDir: ${path.join(dir, "state")}`,
      `  neverBan: [${everythingBut(OPEN)
        .map((r) => `"${r}"`)
        .join(", ")}]`,
      `metrics: { banHelper: "127.0.0.1:0" }`,
      "logging: { level: info }",
      "",
    ].join("\n"),
  );
  const daemon = spawnDaemon(t, ["ban-helper", "--config", config]);
  await daemon.started("ban-helper");
  const port = metricsPort(daemon.stdout());
  const scrape = async () => parseSamples((await request(port)).body);
  const rssBefore = rssBytes(daemon.child.pid!);
  const before = await scrape();

  const r = rng(seed);
  let ok = 0;
  let refusals = 0;
  const odd: string[] = [];
  for (let i = 0; i < MESSAGES; i++) {
    const line = fuzzLine(r);
    const reply = await rawRequest(socket, line);
    const notHeld = /^ERR not banned by the helper '.*?'(?: and (\d+) more)?\n$/.exec(reply);
    if (/^OK \d+\n$/.test(reply)) ok++;
    else if (notHeld) refusals += 1 + Number(notHeld[1] ?? 0);
    else if (/^ERR [ -~]+\n$/.test(reply)) refusals++;
    else odd.push(`${JSON.stringify(line.toString("latin1").slice(0, 80))} -> ${JSON.stringify(reply)}`);
  }
  t.deepEqual(odd, [], `every request gets one answer line; seed ${seed}`);

  // Liveness: a valid request is still carried out, in the real fail2ban.
  t.is(await rawRequest(socket, `BAN f2bz ${OPEN}.200\n`), "OK 1\n");
  t.true((await lab.banned("f2bz")).includes(`${OPEN}.200`));

  const after = await scrape();
  const detail = `seed ${seed}; changes ${JSON.stringify(changes(before, after))}`;
  const delta = (name: string) => family(after, name) - family(before, name);
  t.is(delta("f2bz_helper_requests_refused_total"), refusals, `every refusal counted; ${detail}`);
  t.is(
    delta('f2bz_helper_requests_total{process="ban-helper",verb="ban",result="ok"}') +
      delta('f2bz_helper_requests_total{process="ban-helper",verb="unban",result="ok"}'),
    ok + 1,
    detail,
  );
  t.is(delta("f2bz_helper_requests_total") - ok - 1, 0, `no call failed; ${detail}`);
  t.true(refusals > MESSAGES * 0.9, detail);
  const banned = await lab.banned("f2bz");
  t.deepEqual(
    banned.filter((ip) => !ip.startsWith(`${OPEN}.`)),
    [],
    detail,
  );
  const grown = rssBytes(daemon.child.pid!) - rssBefore;
  t.true(grown < RSS_BOUND_BYTES, `rss grew ${grown} bytes; seed ${seed}`);
  t.is(await daemon.stop(), 0);
});
