/**
 * `keys add` and `keys accept` run as root on files others may control: they must install exactly
 * the bytes they checked, read once through the checked descriptor, and never a file named later.
 */
import { constants } from "node:fs";
import {
  chmod,
  chown,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  symlink,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import anyTest, { type ExecutionContext } from "ava";
import { loadPublicIdentity } from "../../src/keys/files.js";
import { pendingId } from "../../src/keys/store.js";
import { z85Encode } from "../../src/keys/z85.js";
import { createTestUser, isRoot, runNodeAs, type TestUser } from "../harness/users.js";
import { waitFor } from "../harness/wait.js";
import { type CliResult, runCli } from "../helpers/cli.js";
import { asRoot } from "../helpers/skip.js";
import { tempDir } from "../helpers/temp-dir.js";

const test = anyTest;
const rootTest = asRoot(anyTest, "the key install tests that need another user");

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const swapper = path.join(root, "test/foundation/fixtures/swap-source.ts");

let user: TestUser | undefined;
test.before(async () => {
  if (isRoot()) user = await createTestUser("f2bz-keyinstall");
});
test.after.always(async () => {
  await user?.remove();
});

function oneLine(t: ExecutionContext, r: CliResult) {
  t.is(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
  t.false(r.stderr.includes("    at "), r.stderr);
}

const ls = async (dir: string) => (await readdir(dir).catch(() => [])).sort();

/** A node's public key made by keygen, in a directory (0755) the test user may traverse. */
async function setup(t: ExecutionContext) {
  const dir = await tempDir(t);
  await chmod(dir, 0o755);
  const nodes = path.join(dir, "nodes");
  const made = await runCli(["keygen", "--name", "web1", "--dir", nodes]);
  t.is(made.code, 0, made.stderr);
  const keys = path.join(dir, "keys");
  const pub = path.join(nodes, "web1.key");
  return {
    dir,
    keys,
    pub,
    text: await readFile(pub),
    keysCli: (...args: string[]) => runCli(["keys", ...args, "--keys", keys]),
  };
}

for (const mode of [0o666, 0o646, 0o664]) {
  const octal = mode.toString(8).padStart(4, "0");
  test(`keys add refuses a source with mode ${octal}: whoever may write it chose the key`, async (t) => {
    const { dir, keys, text, keysCli } = await setup(t);
    const source = path.join(dir, "web1.key");
    await writeFile(source, text);
    await chmod(source, mode);
    const r = await keysCli("add", "subscriber", source);
    t.is(r.code, 77);
    oneLine(t, r);
    t.is(
      r.stderr,
      `f2bz keys: key file '${source}' has mode ${octal}, expected no write permission for group or others\n`,
    );
    t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), []);
  });
}

test("keys add refuses a source that is a symlink or has another hard link", async (t) => {
  const { dir, keys, pub, keysCli } = await setup(t);
  const linked = path.join(dir, "linked.key");
  await symlink(pub, linked);
  const viaSymlink = await keysCli("add", "subscriber", linked);
  t.is(viaSymlink.code, 77);
  oneLine(t, viaSymlink);
  t.is(viaSymlink.stderr, `f2bz keys: key file '${linked}' is a symlink, expected a regular file\n`);
  // A second name may be a file the operator never meant (a root-only file linked into /tmp).
  const hard = path.join(dir, "hard.key");
  await link(pub, hard);
  const viaHardLink = await keysCli("add", "subscriber", hard);
  t.is(viaHardLink.code, 77);
  oneLine(t, viaHardLink);
  t.is(viaHardLink.stderr, `f2bz keys: key file '${hard}' has 2 hard links, expected 1\n`);
  t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), []);
});

rootTest(
  "keys add installs the bytes it read, 0644 whatever the umask; a writer of the source changes nothing",
  async (t) => {
    const { dir, keys, text } = await setup(t);
    const other = await setup(t);
    // Owned by the node's operator, who keeps a writable descriptor from before the add.
    const drop = path.join(dir, "drop");
    await mkdir(drop, { mode: 0o755 });
    await chown(drop, user!.uid, user!.gid);
    const source = path.join(drop, "web1.key");
    // Bytes a re-encoding would change: no final newline, CRLF, a comment that is not UTF-8.
    const bytes = Buffer.concat([Buffer.from("# \xff\xfe latin-1\r\n", "latin1"), text.subarray(0, -1)]);
    await writeFile(source, bytes, { mode: 0o644 });
    await chown(source, user!.uid, user!.gid);
    const writer = await open(source, constants.O_RDWR);
    t.teardown(() => writer.close());

    for (const [umask, name] of [
      [0o000, "web1"],
      [0o077, "web1b"],
    ] as const) {
      const r = await runCli(
        ["keys", "add", "monitor", source, "--keys", path.join(keys, name), "--name", name],
        {
          umask,
        },
      );
      t.is(r.code, 0, r.stderr);
      const installed = path.join(keys, name, "authorized", "monitors", `${name}.key`);
      t.deepEqual(await readFile(installed), bytes);
      const stat = await lstat(installed);
      t.deepEqual([stat.mode & 0o7777, stat.uid, stat.nlink], [0o644, 0, 1]);
    }
    await writer.truncate(0);
    await writer.write(other.text, 0, other.text.length, 0);
    t.deepEqual(await readFile(source), other.text, "the writer did replace the source");
    const installed = path.join(keys, "web1", "authorized", "monitors", "web1.key");
    t.deepEqual(await readFile(installed), bytes);
    const original = await loadPublicIdentity(path.join(dir, "nodes", "web1.key"));
    const list = await runCli(["keys", "list", "--keys", path.join(keys, "web1")]);
    t.regex(list.stdout, new RegExp(`^monitor +web1 +active +${original.nodeId} `, "m"));
    t.deepEqual(
      await ls(path.join(keys, "web1", "authorized", "monitors")),
      ["web1.key"],
      "no temporary file left",
    );
  },
);

/** A pending record as the publisher writes it, in pending/ owned by `owner` (the publisher's user). */
async function pendingRecord(keys: string, pub: string, owner: { uid: number; gid: number }) {
  const identity = await loadPublicIdentity(pub);
  const curve = z85Encode(identity.curvePublic);
  const id = pendingId(identity.curvePublic);
  const dir = path.join(keys, "pending");
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chown(dir, owner.uid, owner.gid);
  const file = path.join(dir, `${id}.key`);
  await writeFile(
    file,
    `metadata\n    name = "${id}"\n    role = "subscriber"\n    address = "192.0.2.7"\ncurve\n    public-key = "${curve}"\n`,
  );
  return { id, dir, file };
}

rootTest(
  "keys accept takes a record of root or of pending/'s owner, refuses one of another user",
  async (t) => {
    const { keys, pub, keysCli } = await setup(t);
    // pending/ belongs to root here: a record of the test user was laid there by someone else.
    const planted = await pendingRecord(keys, pub, { uid: 0, gid: 0 });
    await chown(planted.file, user!.uid, user!.gid);
    const refused = await keysCli("accept", planted.id);
    t.is(refused.code, 77);
    oneLine(t, refused);
    t.is(
      refused.stderr,
      `f2bz keys: key file '${planted.file}' is owned by uid ${user!.uid}, expected root or the owner of '${planted.dir}' (uid 0)\n`,
    );
    t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), []);
    t.deepEqual(await ls(planted.dir), [`${planted.id}.key`], "the record is kept");

    // pending/ belongs to the publisher's user, who wrote the record: accepted.
    await chown(planted.dir, user!.uid, user!.gid);
    const accepted = await keysCli("accept", planted.id);
    t.is(accepted.code, 0, accepted.stderr);
    t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), [`${planted.id}.key`]);
    t.deepEqual(await ls(planted.dir), []);
  },
);

rootTest("keys accept refuses a pending/ others may write, and a record that is a symlink", async (t) => {
  const { dir, keys, pub, keysCli } = await setup(t);
  const record = await pendingRecord(keys, pub, { uid: 0, gid: 0 });
  await chmod(record.dir, 0o777);
  const writable = await keysCli("accept", record.id);
  t.is(writable.code, 77);
  oneLine(t, writable);
  t.is(
    writable.stderr,
    `f2bz keys: key directory '${record.dir}' has mode 0777, expected no write permission for group or others\n`,
  );
  await chmod(record.dir, 0o755);
  const elsewhere = path.join(dir, "elsewhere.key");
  await writeFile(elsewhere, await readFile(record.file));
  await symlink(elsewhere, `${record.file}.new`);
  await rename(`${record.file}.new`, record.file);
  const linked = await keysCli("accept", record.id);
  t.is(linked.code, 77);
  oneLine(t, linked);
  t.is(linked.stderr, `f2bz keys: key file '${record.file}' is a symlink, expected a regular file\n`);
  t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), []);
});

rootTest("a source swapped for a symlink to a root-only file never gets that file installed", async (t) => {
  t.timeout(180_000);
  const { dir, keys, text } = await setup(t);
  // The root-only file is a certificate of the same key plus a line only root may read, so that a
  // check of the installed key alone (what the old copy did afterwards) cannot notice the swap.
  const marker = `root only ${Math.random().toString(36).slice(2)}`;
  const rootOnly = path.join(dir, "root-only.key");
  await writeFile(rootOnly, Buffer.concat([Buffer.from(`# ${marker}\n`), text]), { mode: 0o600 });
  const drop = path.join(dir, "drop");
  await mkdir(drop, { mode: 0o755 });
  await chown(drop, user!.uid, user!.gid);
  const source = path.join(drop, "web1.key");
  await writeFile(source, text, { mode: 0o644 });
  await chown(source, user!.uid, user!.gid);
  const ready = path.join(drop, "ready");
  const stop = path.join(dir, "stop");
  const attacker = runNodeAs(user!, swapper, [source, rootOnly, ready, stop], {
    cwd: root,
    timeoutMs: 170_000,
  });
  t.teardown(() => writeFile(stop, "").catch(() => undefined));
  await waitFor(
    () =>
      lstat(ready).then(
        () => true,
        () => undefined,
      ),
    {
      timeoutMs: 60_000,
      what: "the attacker's first swap",
    },
  );

  const attempts = 24;
  let installed = 0;
  let refused = 0;
  for (let i = 0; i < attempts; i++) {
    const keysDir = path.join(keys, `k${i}`);
    const r = await runCli(["keys", "add", "subscriber", source, "--keys", keysDir]);
    t.false(r.stderr.includes(marker) || r.stdout.includes(marker), r.stderr);
    for (const name of await ls(path.join(keysDir, "authorized", "subscribers"))) {
      const content = await readFile(path.join(keysDir, "authorized", "subscribers", name));
      t.false(content.includes(marker), `attempt ${i} installed the root-only file`);
      t.deepEqual(content, text);
    }
    if (r.code === 0) installed++;
    else {
      // Refused when the symlink was there at the open, or the file opened was swapped out.
      t.regex(r.stderr, /^f2bz keys: key file '[^']+' (is a symlink|was replaced while it was being read)/);
      refused++;
    }
  }
  await writeFile(stop, "");
  const swaps = await attacker;
  t.is(swaps.code, 0, swaps.stderr);
  t.log(`${installed} installed, ${refused} refused, ${swaps.stdout.trim()} swaps`);
  t.true(refused > 0, "the swap was seen: the race ran");
});
