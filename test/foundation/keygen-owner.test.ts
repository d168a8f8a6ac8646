import { chmod, chown, lstat, mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { createTestUser, isRoot, type TestUser } from "../harness/users.js";
import { type CliResult, runCli, spawnDaemon } from "../helpers/cli.js";
import { asRoot } from "../helpers/skip.js";
import { tempDir } from "../helpers/temp-dir.js";

/**
 * `keygen` run as root for a daemon that runs as its own user (issue 15): `--owner USER` hands the
 * secret over safely, and without it the daemon says who owns the secret and how to fix it.
 */
let user: TestUser | undefined;
test.before(async () => {
  if (isRoot()) user = await createTestUser("f2bz-x1-keygen");
});
test.after.always(async () => {
  await user?.remove();
});

const rootTest = asRoot(test, "keygen --owner and the daemon's view of a root-owned secret");

/** A directory the test user can traverse, holding a config that names `identity`. */
async function setup(t: ExecutionContext): Promise<{ dir: string; config: string; keys: string }> {
  const dir = await tempDir(t);
  await chmod(dir, 0o755);
  const keys = path.join(dir, "keys");
  const config = path.join(dir, "f2bz.yaml");
  const yaml = `node:\n  name: web1\n  identity: keys/web1.key_secret\n  stateDir: ${dir}/state\n`;
  await writeFile(config, yaml, { mode: 0o644 });
  return { dir, config, keys };
}

/** `f2bz check-config` as the test user: the daemon's own start-up checks, secret included. */
async function checkConfigAsUser(t: ExecutionContext, config: string, cwd: string): Promise<CliResult> {
  const run = spawnDaemon(t, ["check-config", "--config", config], { as: user!, cwd });
  const { code, signal } = await run.exited;
  return { code, signal, stdout: run.stdout(), stderr: run.stderr(), timedOut: false };
}

function oneLine(t: ExecutionContext, r: CliResult): string {
  t.is(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
  t.false(r.stderr.includes("    at "));
  return r.stderr;
}

rootTest(
  "keygen --owner gives the secret and the directory it creates to the user, whose daemon accepts it",
  async (t) => {
    const { dir, config, keys } = await setup(t);
    const r = await runCli(["keygen", "--name", "web1", "--dir", keys, "--owner", user!.name]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /\(secret, 0600, owned by f2bz-x1-keygen\)\n/);
    const secret = await lstat(path.join(keys, "web1.key_secret"));
    t.like(secret, { uid: user!.uid, gid: user!.gid });
    t.is(secret.mode & 0o7777, 0o600);
    const keysDir = await lstat(keys);
    t.like(keysDir, { uid: user!.uid, gid: user!.gid });
    t.is(keysDir.mode & 0o7777, 0o700);
    t.is((await lstat(path.join(keys, "web1.key"))).mode & 0o7777, 0o644);
    t.deepEqual((await readdir(keys)).sort(), ["web1.key", "web1.key_secret"], "no temporary file left");

    const check = await checkConfigAsUser(t, config, dir);
    t.is(check.code, 0, check.stderr);
    const nodeId = /^node id: +([0-9a-f]{32})$/m.exec(r.stdout)?.[1];
    t.truthy(nodeId);
    t.true(check.stdout.includes(`ok; node web1 (${nodeId})`), check.stdout);
  },
);

rootTest(
  "a root-owned secret: the user's daemon names the owner and the command that fixes it",
  async (t) => {
    const { dir, config, keys } = await setup(t);
    await mkdir(keys, { mode: 0o755 });
    await chmod(keys, 0o755);
    t.is((await runCli(["keygen", "--name", "web1", "--dir", keys])).code, 0);
    const file = path.join(keys, "web1.key_secret");

    const check = await checkConfigAsUser(t, config, dir);
    t.is(check.code, 77, check.stderr);
    const u = `f2bz-x1-keygen (uid ${user!.uid})`;
    t.is(
      oneLine(t, check),
      `f2bz check-config: key file '${file}' is owned by root (uid 0) with mode 0600 and not readable by ${u}: run 'chown f2bz-x1-keygen: ${file}' or create it with 'f2bz keygen --owner f2bz-x1-keygen'\n`,
    );
  },
);

rootTest("a secret in a directory keygen created as root: the message names the directory", async (t) => {
  const { dir, config, keys } = await setup(t);
  t.is((await runCli(["keygen", "--name", "web1", "--dir", keys])).code, 0);

  const check = await checkConfigAsUser(t, config, dir);
  t.is(check.code, 77, check.stderr);
  t.regex(
    oneLine(t, check),
    new RegExp(
      `^f2bz check-config: key file '.*/keys/web1\\.key_secret' is not readable by f2bz-x1-keygen \\(uid \\d+\\): its directory '${keys}' is owned by root \\(uid 0\\) with mode 0700: run 'chown f2bz-x1-keygen: ${keys}' or create it with 'f2bz keygen --owner f2bz-x1-keygen'\\n$`,
    ),
  );
});

test("keygen --owner refuses an unknown user with one line, exit 67, and writes nothing", async (t) => {
  const dir = await tempDir(t);
  const r = await runCli(["keygen", "--name", "web1", "--dir", dir, "--owner", "f2bz-no-such-user"]);
  t.is(r.code, 67);
  t.is(oneLine(t, r), "f2bz keygen: user 'f2bz-no-such-user' does not exist in '/etc/passwd'\n");
  t.deepEqual(await readdir(dir), []);
});

rootTest(
  "keygen --owner run by a user other than root is refused with one line and leaves no file",
  async (t) => {
    const { dir } = await setup(t);
    const keys = path.join(dir, "mine");
    await mkdir(keys, { mode: 0o700 });
    await chmod(keys, 0o700);
    await chown(keys, user!.uid, user!.gid);
    const run = spawnDaemon(t, ["keygen", "--name", "web1", "--dir", keys, "--owner", "root"], {
      as: user!,
      cwd: dir,
    });
    const { code } = await run.exited;
    t.is(code, 77, run.stderr());
    t.regex(
      run.stderr(),
      /^f2bz keygen: cannot give '.*\/mine\/web1\.key_secret' to root \(uid 0\): operation not permitted, run keygen --owner as root\n$/,
    );
    t.deepEqual(await readdir(keys), [], "no secret, public or temporary file left");
  },
);
