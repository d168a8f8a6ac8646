import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import anyTest from "ava";
import { loadConfig } from "../../src/config/load.js";
import { ensureFail2ban, fail2banBinaries, startFail2ban } from "../harness/fail2ban.js";
import { loadUnit, value, values } from "../helpers/systemd-unit.js";
import { tempDir } from "../helpers/temp-dir.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const systemd = path.join(root, "tools/systemd");
const f2bTest = ensureFail2ban(anyTest);

anyTest("every service unit is hardened, and none sets MemoryDenyWriteExecute (V8 needs W+X)", async (t) => {
  const names = (await fs.readdir(systemd)).filter((n) => n.endsWith(".service")).sort();
  t.deepEqual(names, [
    "f2bz-ban-helper.service",
    "f2bz-monitor.service",
    "f2bz-publisher.service",
    "f2bz-subscriber.service",
  ]);
  for (const name of names) {
    const { text, unit } = await loadUnit(name);
    const command = /^f2bz-(.+)\.service$/.exec(name)![1]!;
    const expect = (key: string, want: string) => t.is(value(unit, "Service", key), want, `${name}: ${key}`);
    t.false(/^\s*MemoryDenyWriteExecute\s*=/m.test(text), `${name}: MemoryDenyWriteExecute must be absent`);
    expect("Type", "simple");
    expect("ExecStart", `/usr/local/bin/f2bz ${command} --config /etc/f2bz/f2bz.yaml`);
    expect("NoNewPrivileges", "yes");
    expect("ProtectSystem", "strict");
    expect("ProtectHome", "yes");
    expect("PrivateTmp", "yes");
    expect("PrivateDevices", "yes");
    expect("CapabilityBoundingSet", "");
    expect("AmbientCapabilities", "");
    expect("RestrictSUIDSGID", "yes");
    expect("RestrictNamespaces", "yes");
    expect("LockPersonality", "yes");
    t.deepEqual(values(unit, "Service", "SystemCallFilter"), ["@system-service", "~@privileged @resources"]);
    expect("SystemCallArchitectures", "native");
    expect("UMask", "0077");
    t.truthy(value(unit, "Service", "RestrictAddressFamilies"), `${name}: RestrictAddressFamilies`);
    t.truthy(value(unit, "Service", "ExecReload"), `${name}: ExecReload (SIGHUP reopens logs)`);
    if (command === "ban-helper") {
      expect("User", "root");
      expect("RestrictAddressFamilies", "AF_UNIX AF_NETLINK");
      expect("IPAddressDeny", "any");
      t.deepEqual(values(unit, "Unit", "Requires"), ["f2bz-ban-helper.socket"]);
    } else {
      expect("User", "f2bz");
      expect("Group", "f2bz");
      expect("StateDirectory", "f2bz");
      expect("StateDirectoryMode", "0700");
    }
  }
});

anyTest("the ban-helper socket unit matches the config: root:f2bz 0660 at banHelper.socket", async (t) => {
  const { unit } = await loadUnit("f2bz-ban-helper.socket");
  t.is(value(unit, "Socket", "SocketUser"), "root");
  t.is(value(unit, "Socket", "SocketGroup"), "f2bz");
  t.is(value(unit, "Socket", "SocketMode"), "0660");
  t.is(value(unit, "Socket", "Accept"), "no");
  const example = await loadConfig(path.join(root, "config/f2bz.example.yaml"));
  t.is(value(unit, "Socket", "ListenStream"), example.banHelper?.socket);
  t.is(example.banHelper?.group ?? "f2bz", "f2bz");
});

f2bTest(
  "the fail2ban snippets load in a real fail2ban: jail f2bz bans only on request, for 31 days",
  async (t) => {
    t.timeout(45_000);
    const read = (p: string) => fs.readFile(path.join(root, "tools/fail2ban", p), "utf8");
    const lab = await startFail2ban({
      jails: ["web-01"],
      extraJails: ["f2bz"],
      files: {
        "jail.d/f2bz.conf": await read("jail.d/f2bz.conf"),
        "filter.d/f2bz.conf": await read("filter.d/f2bz.conf"),
      },
    });
    t.teardown(() => lab.cleanup());
    t.is((await lab.client(["get", "f2bz", "bantime"])).stdout.trim(), String(31 * 86_400));
    t.is((await lab.client(["get", "f2bz", "bantime.increment"])).stdout.trim(), "False");
    t.is((await lab.client(["set", "f2bz", "banip", "192.0.2.31"])).stdout.trim(), "1");
    t.deepEqual(await lab.banned("f2bz"), ["192.0.2.31"]);
    t.regex(await lab.actions(), /^ban f2bz 192\.0\.2\.31$/m);

    // The filter matches nothing, not even its own marker text or the lab's failure lines.
    const dir = await tempDir(t, "f2bz-regex-");
    const sample = path.join(dir, "sample.log");
    await fs.writeFile(
      sample,
      "2026-11-29T10:00:00Z f2bz-never-matches 192.0.2.1\n2026-11-29T10:00:01Z Failed login from 192.0.2.2\n",
    );
    const regex = await run(
      path.join(path.dirname(fail2banBinaries()!.client), "fail2ban-regex"),
      [sample, path.join(root, "tools/fail2ban/filter.d/f2bz.conf")],
      { timeout: 30_000 },
    );
    t.regex(regex.stdout, /Lines: 2 lines, 0 ignored, 0 matched, 2 missed/);
  },
);
