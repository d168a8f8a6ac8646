import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import anyTest, { type ExecutionContext } from "ava";
import { ensureFail2ban, fail2banBinaries, startFail2ban } from "../harness/fail2ban.js";
import { tempDir } from "../helpers/temp-dir.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const snippets = path.join(root, "tools/fail2ban");
const test = ensureFail2ban(anyTest);

const read = (p: string) => fs.readFile(path.join(snippets, p), "utf8");

/**
 * What fail2ban would send to its server for jail f2bz on a host with Debian's own /etc/fail2ban
 * (jail.conf, action.d, its banaction) plus the shipped snippets: `fail2ban-client -d` reads the
 * config and starts nothing, so no firewall is touched.
 */
async function effectiveActions(t: ExecutionContext, local?: string) {
  const dir = await tempDir(t, "f2bz-jail-");
  const etc = path.join(dir, "fail2ban");
  await fs.cp("/etc/fail2ban", etc, { recursive: true });
  await fs.writeFile(path.join(etc, "jail.d/f2bz.conf"), await read("jail.d/f2bz.conf"));
  await fs.writeFile(path.join(etc, "filter.d/f2bz.conf"), await read("filter.d/f2bz.conf"));
  if (local) await fs.writeFile(path.join(etc, "jail.d/f2bz.local"), local);
  const { stdout } = await run(fail2banBinaries()!.client, ["-c", etc, "-d"], { timeout: 30_000 });
  const lines = stdout.split("\n");
  return {
    added: lines.filter((l) => l.startsWith("['set', 'f2bz', 'addaction', ")),
    action: lines.filter((l) => l.startsWith("['multi-set', 'f2bz', 'action', ")).join("\n"),
  };
}

test("with Debian's banaction the cluster jail blocks every protocol: iptables-allports, -p all", async (t) => {
  const { added, action } = await effectiveActions(t);
  t.deepEqual(added, ["['set', 'f2bz', 'addaction', 'iptables-allports']"]);
  t.regex(action, /\['protocol', 'all'\]/);
  // The rule that sends the address to the f2b-f2bz chain: for each protocol in 'all', `-p all`,
  // with no port match; tcp-only (the multiport default) would leave UDP and ICMP open.
  t.regex(action, /for proto in \$\(echo 'all' \| sed/);
  t.regex(action, /<iptables> -I INPUT -p \$proto -j f2b-f2bz/);
  t.notRegex(action, /multiport|--dports|'tcp'/);
});

test("on an nftables host the documented f2bz.local blocks the address with no protocol match", async (t) => {
  const { added, action } = await effectiveActions(t, "[f2bz]\nbanaction = nftables[type=custom]\n");
  t.deepEqual(added, ["['set', 'f2bz', 'addaction', 'nftables']"]);
  t.regex(action, /add rule inet f2b-table f2b-chain\s+<addr_family> saddr @<addr_set> reject/);
  t.notRegex(action, /l4proto|dport/);
});

test("a running fail2ban gives the cluster jail's action protocol all, other jails keep tcp", async (t) => {
  t.timeout(45_000);
  // The lab's recording action stands in for the firewall (no iptables on a test machine); the
  // host defaults are the lines of Debian's jail.conf that choose and parameterise the banaction.
  const host = [
    "[DEFAULT]",
    "protocol = tcp",
    "port = 0:65535",
    "banaction = f2bz-lab-file",
    "banaction_allports = f2bz-lab-file",
    'action = %(banaction)s[name=%(__name__)s, port="%(port)s", protocol="%(protocol)s"]',
    "",
  ].join("\n");
  const lab = await startFail2ban({
    jails: ["web-01"],
    extraJails: ["f2bz"],
    files: {
      "jail.d/00-host.conf": host,
      "jail.d/f2bz.conf": await read("jail.d/f2bz.conf"),
      "filter.d/f2bz.conf": await read("filter.d/f2bz.conf"),
    },
  });
  t.teardown(() => lab.cleanup());
  const get = async (jail: string, property: string) =>
    (await lab.client(["get", jail, "action", "f2bz-lab-file", property])).stdout.trim();
  t.is(await get("f2bz", "protocol"), "all");
  t.is(await get("f2bz", "port"), "0:65535");
  t.is(await get("web-01", "protocol"), "tcp");
  t.is((await lab.client(["set", "f2bz", "banip", "192.0.2.77"])).stdout.trim(), "1");
  t.regex(await lab.actions(), /^ban f2bz 192\.0\.2\.77$/m);
});
