import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import anyTest from "ava";
import { CLI, ensureBuilt } from "../helpers/cli.js";
import { asRoot } from "../helpers/skip.js";
import { tempDir } from "../helpers/temp-dir.js";

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const SCRIPT = path.join(root, "tools/install.sh");
const UNITS = [
  "f2bz-ban-helper.service",
  "f2bz-ban-helper.socket",
  "f2bz-monitor.service",
  "f2bz-publisher.service",
  "f2bz-subscriber.service",
];

const test = asRoot(anyTest, "the tools/install.sh tests (it creates users and chowns)");

async function install(dir: string, ...args: string[]) {
  return execFileAsync("/bin/sh", [SCRIPT, "--root", dir, "--bin", CLI, ...args], {
    timeout: 60_000,
    env: { ...process.env, PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
  });
}

/** A throwaway root with the account files a fresh Debian has, and nothing of f2bz. */
async function throwawayRoot(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = await tempDir(t, "f2bz-root-");
  await fs.mkdir(path.join(dir, "etc"));
  await fs.writeFile(path.join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
  await fs.writeFile(path.join(dir, "etc/group"), "root:x:0:\nadm:x:4:\n");
  await fs.writeFile(path.join(dir, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o640 });
  await fs.writeFile(path.join(dir, "etc/gshadow"), "root:*::\nadm:*::\n", { mode: 0o640 });
  return dir;
}

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    const st = await fs.lstat(path.join(dir, rel));
    out[rel || "."] = `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8).padStart(4, "0")}`;
    if (st.isDirectory())
      for (const name of (await fs.readdir(path.join(dir, rel))).sort()) await walk(path.join(rel, name));
    else out[rel] += ` ${(await fs.readFile(path.join(dir, rel))).toString("base64")}`;
  };
  await walk("");
  return out;
}

test("install.sh sets up users, owners, modes, identity, units and jail, idempotently, and uninstalls", async (t) => {
  t.timeout(120_000);
  ensureBuilt();
  const dir = await throwawayRoot(t);
  const first = await install(dir, "--name", "node-a");
  t.regex(first.stdout, /f2bz is set up for node 'node-a'/);

  const passwd = await fs.readFile(path.join(dir, "etc/passwd"), "utf8");
  const entry = /^f2bz:x:(\d+):(\d+)::\/var\/lib\/f2bz:\/usr\/sbin\/nologin$/m.exec(passwd);
  t.truthy(entry, passwd);
  const [uid, gid] = [Number(entry![1]), Number(entry![2])];
  t.true(uid > 0 && uid < 1000, `a system uid, got ${uid}`);
  t.regex(await fs.readFile(path.join(dir, "etc/group"), "utf8"), new RegExp(`^f2bz:x:${gid}:$`, "m"));

  const owner = async (rel: string) => {
    const st = await fs.lstat(path.join(dir, rel));
    return `${st.uid === uid ? "f2bz" : st.uid}:${st.gid === gid ? "f2bz" : st.gid} ${(st.mode & 0o7777).toString(8)}`;
  };
  t.is(await owner("etc/f2bz"), "0:f2bz 750");
  t.is(await owner("etc/f2bz/f2bz.yaml"), "0:f2bz 640");
  t.is(await owner("etc/f2bz/keys"), "0:f2bz 750");
  t.is(await owner("etc/f2bz/keys/authorized/monitors"), "0:0 755");
  t.is(await owner("etc/f2bz/keys/authorized/subscribers"), "0:0 755");
  t.is(await owner("etc/f2bz/keys/revoked"), "0:0 755");
  // The publisher (user f2bz) records sign-up requests here.
  t.is(await owner("etc/f2bz/keys/pending"), "f2bz:f2bz 755");
  t.is(await owner("etc/f2bz/keys/node-a.key_secret"), "f2bz:f2bz 600");
  t.is(await owner("etc/f2bz/keys/node-a.key"), "0:0 644");
  t.is(await owner("var/lib/f2bz"), "f2bz:f2bz 700");
  t.is(await owner("var/log/f2bz"), "f2bz:f2bz 750");
  const secretText = await fs.readFile(path.join(dir, "etc/f2bz/keys/node-a.key_secret"), "utf8");
  t.regex(secretText, /name = "node-a"/);

  const config = await fs.readFile(path.join(dir, "etc/f2bz/f2bz.yaml"), "utf8");
  t.regex(config, /^ {2}name: node-a$/m);
  t.regex(config, /^ {2}identity: keys\/node-a\.key_secret$/m);

  // What the daemons will do at start, as the user they run as: load the config and every key it
  // names, through the group f2bz. The example names the publisher's key pub1.key: put one there.
  await execFileAsync(process.execPath, [
    CLI,
    "keygen",
    "--name",
    "pub1",
    "--dir",
    path.join(dir, "etc/f2bz/keys"),
  ]);
  await fs.rm(path.join(dir, "etc/f2bz/keys/pub1.key_secret"));
  await fs.chmod(dir, 0o755);
  const check = await execFileAsync(
    process.execPath,
    [CLI, "check-config", "--config", path.join(dir, "etc/f2bz/f2bz.yaml")],
    { uid, gid, cwd: "/", env: { PATH: "/usr/bin:/bin", NO_COLOR: "1" }, timeout: 30_000 },
  ).catch((error: { stderr: string }) => ({ stdout: "", stderr: error.stderr }));
  t.regex(check.stdout, /: ok; node node-a /, check.stderr);
  await fs.rm(path.join(dir, "etc/f2bz/keys/pub1.key"));

  for (const unit of UNITS) {
    t.is(await owner(`etc/systemd/system/${unit}`), "0:0 644", unit);
    const text = await fs.readFile(path.join(dir, "etc/systemd/system", unit), "utf8");
    t.notRegex(text, /\/usr\/local\/bin\/f2bz/, `${unit} still runs /usr/local/bin/f2bz`);
    if (unit.endsWith(".service"))
      t.regex(
        text,
        new RegExp(`^ExecStart=${CLI.replaceAll(".", "\\.")} \\S+ --config /etc/f2bz/f2bz\\.yaml$`, "m"),
      );
  }
  for (const snippet of ["jail.d/f2bz.conf", "filter.d/f2bz.conf"])
    t.is(
      await fs.readFile(path.join(dir, "etc/fail2ban", snippet), "utf8"),
      await fs.readFile(path.join(root, "tools/fail2ban", snippet), "utf8"),
    );

  // Idempotent: a second run keeps the identity, the config and the user, and changes nothing.
  const before = await snapshot(dir);
  await install(dir, "--name", "node-a");
  t.deepEqual(await snapshot(dir), before);

  // An operator's change of an owner is set right again (as `keys add` would leave pending/).
  await fs.chown(path.join(dir, "etc/f2bz/keys/pending"), 0, 0);
  await install(dir, "--name", "node-a");
  t.is(await owner("etc/f2bz/keys/pending"), "f2bz:f2bz 755");

  const removed = await install(dir, "--uninstall");
  t.regex(removed.stdout, /kept \/etc\/f2bz/);
  for (const unit of UNITS) t.false(existsSync(path.join(dir, "etc/systemd/system", unit)), unit);
  t.false(existsSync(path.join(dir, "etc/fail2ban/jail.d/f2bz.conf")));
  t.false(existsSync(path.join(dir, "etc/fail2ban/filter.d/f2bz.conf")));
  t.is(
    await fs.readFile(path.join(dir, "etc/f2bz/keys/node-a.key_secret"), "utf8"),
    secretText,
    "--uninstall keeps the identity",
  );

  await install(dir, "--purge");
  for (const rel of ["etc/f2bz", "var/lib/f2bz", "var/log/f2bz"])
    t.false(existsSync(path.join(dir, rel)), rel);
  t.notRegex(await fs.readFile(path.join(dir, "etc/passwd"), "utf8"), /^f2bz:/m);
  t.notRegex(await fs.readFile(path.join(dir, "etc/group"), "utf8"), /^f2bz:/m);
});

test("install.sh refuses a node name keygen would refuse, before creating anything", async (t) => {
  const dir = await throwawayRoot(t);
  const error = await install(dir, "--name", "bad name").then(
    () => undefined,
    (e: { code: number; stderr: string }) => e,
  );
  t.truthy(error);
  t.regex(error!.stderr, /node name 'bad name' is not valid/);
  t.false(existsSync(path.join(dir, "etc/f2bz")));
  t.notRegex(await fs.readFile(path.join(dir, "etc/passwd"), "utf8"), /^f2bz:/m);
});
