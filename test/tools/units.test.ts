import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import anyTest, { type ExecutionContext } from "ava";
import { runCli } from "../helpers/cli.js";
import { testWhen } from "../helpers/skip.js";
import { loadUnit, values } from "../helpers/systemd-unit.js";
import { tempDir } from "../helpers/temp-dir.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const systemd = path.join(root, "tools/systemd");
const DAEMONS = ["ban-helper", "monitor", "publisher", "subscriber"] as const;
const UNPRIVILEGED = ["monitor", "publisher", "subscriber"] as const;

const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((p) => existsSync(p));
const verifyTest = testWhen(
  anyTest,
  analyze !== undefined,
  "systemd-analyze not found: 'systemd-analyze verify' of tools/systemd (apt-get install -y systemd)",
);

async function service(name: string): Promise<(key: string) => string[]> {
  const { unit } = await loadUnit(`f2bz-${name}.service`);
  return (key) => values(unit, "Service", key);
}

verifyTest("systemd-analyze verify accepts every unit without a warning", async (t) => {
  const dir = await tempDir(t, "f2bz-units-");
  const names = await fs.readdir(systemd);
  for (const name of names) {
    // verify insists that ExecStart exists; f2bz is not installed in /usr/local/bin here.
    const text = (await fs.readFile(path.join(systemd, name), "utf8")).replace(
      /^ExecStart=\/usr\/local\/bin\/f2bz /m,
      "ExecStart=/bin/true ",
    );
    await fs.writeFile(path.join(dir, name), text);
  }
  // An unknown or misspelt key is only a warning (exit 0): any output fails the test.
  const { stdout, stderr } = await run(analyze!, ["verify", "--man=no", ...names], {
    cwd: dir,
    timeout: 20_000,
  });
  t.is(`${stdout}${stderr}`.trim(), "");
});

/** A config directory as an operator sets it up, from the example config, with real keys. */
async function operatorConfig(t: ExecutionContext) {
  const dir = await tempDir(t, "f2bz-units-cfg-");
  const keys = path.join(dir, "keys");
  for (const name of ["web1", "pub1"]) {
    const r = await runCli(["keygen", "--name", name, "--dir", keys]);
    t.is(r.code, 0, r.stderr);
  }
  const config = path.join(dir, "f2bz.yaml");
  const example = await fs.readFile(path.join(root, "config/f2bz.example.yaml"), "utf8");
  await fs.writeFile(config, example.replace("stateDir: /var/lib/f2bz", `stateDir: ${dir}/state`));
  return { dir, keys, config, example: await fs.readFile(config, "utf8") };
}

anyTest("a config typo stops every daemon's unit instead of restarting it in a loop", async (t) => {
  const { config, example } = await operatorConfig(t);
  const typo = example.replace(/^ {2}level: info$/m, "  levle: info");
  t.not(typo, example);
  await fs.writeFile(config, typo);
  for (const name of DAEMONS) {
    const prevent = (await service(name))("RestartPreventExitStatus").flatMap((v) => v.split(/\s+/));
    t.deepEqual((await service(name))("Restart"), ["on-failure"], name);
    const r = await runCli([name, "--config", config], { timeoutMs: 20_000 });
    t.false(r.timedOut, `${name} kept running with a typo`);
    t.regex(r.stderr, /levle/, name);
    t.true(prevent.includes(String(r.code)), `${name} exits ${r.code}, not in RestartPreventExitStatus`);
  }
});

anyTest("a missing config or a secret key others can read stops the unit too", async (t) => {
  const { dir, keys, config } = await operatorConfig(t);
  const prevent = (await service("monitor"))("RestartPreventExitStatus").flatMap((v) => v.split(/\s+/));
  const missing = await runCli(["monitor", "--config", path.join(dir, "nowhere.yaml")]);
  t.regex(missing.stderr, /nowhere\.yaml/);
  t.true(prevent.includes(String(missing.code)), `missing config: exit ${missing.code}`);
  await fs.chmod(path.join(keys, "web1.key_secret"), 0o644);
  const loose = await runCli(["monitor", "--config", config], { timeoutMs: 20_000 });
  t.regex(loose.stderr, /web1\.key_secret/);
  t.true(prevent.includes(String(loose.code)), `key mode 0644: exit ${loose.code}`);
});

anyTest("the unprivileged daemons may write /var/log/f2bz, where logging.file points", async (t) => {
  const example = await fs.readFile(path.join(root, "config/f2bz.example.yaml"), "utf8");
  t.regex(example, /^ {2}# file: \/var\/log\/f2bz\/f2bz\.log$/m);
  for (const name of UNPRIVILEGED) {
    const get = await service(name);
    t.deepEqual(get("LogsDirectory"), ["f2bz"], name);
    t.deepEqual(get("LogsDirectoryMode"), ["0750"], name);
    t.deepEqual(get("ProtectSystem"), ["strict"], name);
  }
});

anyTest("the publisher's unit hands keys/pending to f2bz before it starts, as root", async (t) => {
  const get = await service("publisher");
  // '+': outside the sandbox and as root, so it can take over a pending/ that `keys add` created.
  t.deepEqual(get("ExecStartPre"), ["+/usr/bin/install -d -o f2bz -g f2bz -m 0755 /etc/f2bz/keys/pending"]);
  t.deepEqual(get("ReadWritePaths"), ["/etc/f2bz/keys/pending"]);
  t.deepEqual(get("User"), ["f2bz"]);
});

anyTest(
  "every daemon's unit takes the further hardening: no privileged syscalls, pid-only /proc",
  async (t) => {
    for (const name of DAEMONS) {
      const get = await service(name);
      t.deepEqual(get("SystemCallFilter"), ["@system-service", "~@privileged @resources"], name);
      t.deepEqual(get("SystemCallErrorNumber"), ["EPERM"], name);
      t.deepEqual(get("PrivateMounts"), ["yes"], name);
      t.deepEqual(get("ProcSubset"), ["pid"], name);
      // RemoveIPC= does nothing for root; the f2bz user's leftovers go at stop.
      t.deepEqual(get("RemoveIPC"), name === "ban-helper" ? [] : ["yes"], name);
    }
  },
);
