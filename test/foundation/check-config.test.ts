import { chmod, copyFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import test, { type ExecutionContext } from "ava";
import { loadSecretIdentity } from "../../src/keys/files.js";
import { type CliResult, runCli } from "../helpers/cli.js";
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

/** A config directory as an operator sets it up: the config file, keys/ with real identities. */
async function setup(t: ExecutionContext) {
  const dir = await tempDir(t);
  const keys = path.join(dir, "keys");
  for (const name of ["web1", "pub1"]) {
    const r = await runCli(["keygen", "--name", name, "--dir", keys]);
    t.is(r.code, 0, r.stderr);
  }
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
