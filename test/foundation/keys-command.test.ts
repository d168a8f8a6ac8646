import { lstat, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { loadPublicIdentity } from "../../src/keys/files.js";
import { fingerprint, generateIdentity } from "../../src/keys/identity.js";
import { pendingId } from "../../src/keys/store.js";
import { z85Decode, z85Encode } from "../../src/keys/z85.js";
import { type CliResult, runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp-dir.js";

function oneLine(t: ExecutionContext, r: CliResult) {
  t.is(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
  t.false(r.stderr.includes("    at "), r.stderr);
  t.false(r.stderr.includes("internal error"), r.stderr);
}

/** Node identities made by keygen, and an empty publisher key directory. */
async function setup(t: ExecutionContext, names = ["web1", "web2"]) {
  const dir = await tempDir(t);
  const nodes = path.join(dir, "nodes");
  for (const name of names) {
    const r = await runCli(["keygen", "--name", name, "--dir", nodes]);
    t.is(r.code, 0, r.stderr);
  }
  const keys = path.join(dir, "keys");
  const keysCli = (...args: string[]) => runCli(["keys", ...args, "--keys", keys]);
  return { dir, nodes, keys, keysCli, pub: (name: string) => path.join(nodes, `${name}.key`) };
}

const ls = async (dir: string) => (await readdir(dir).catch(() => [])).sort();

test("keys add monitor and subscriber copy the public file into the role's directory", async (t) => {
  const { keys, keysCli, pub } = await setup(t);
  const identity = await loadPublicIdentity(pub("web1"));
  const r = await keysCli("add", "monitor", pub("web1"));
  t.is(r.code, 0, r.stderr);
  t.is(
    r.stdout,
    `authorized monitor web1: node ${identity.nodeId}, curve ${fingerprint(identity.curvePublic)}\n`,
  );
  const target = path.join(keys, "authorized", "monitors", "web1.key");
  t.is(await readFile(target, "utf8"), await readFile(pub("web1"), "utf8"));
  t.is((await lstat(target)).mode & 0o777, 0o644);
  const s = await keysCli("add", "subscriber", pub("web2"));
  t.is(s.code, 0, s.stderr);
  t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), ["web2.key"]);
  t.deepEqual(await ls(keys), ["authorized", "pending", "revoked"]);
});

test("one node may hold both roles with the same key", async (t) => {
  const { keysCli, pub } = await setup(t);
  t.is((await keysCli("add", "monitor", pub("web1"))).code, 0);
  t.is((await keysCli("add", "subscriber", pub("web1"))).code, 0);
  const list = await keysCli("list");
  t.regex(list.stdout, /^monitor +web1 +active /m);
  t.regex(list.stdout, /^subscriber +web1 +active /m);
});

test("keys add refuses the same name twice and the same key under another name", async (t) => {
  const { nodes, keys, keysCli, pub } = await setup(t);
  t.is((await keysCli("add", "monitor", pub("web1"))).code, 0);
  const sameKey = await runCli(["keys", "add", "monitor", pub("web1"), "--keys", keys, "--name", "other"]);
  t.is(sameKey.code, 65);
  oneLine(t, sameKey);
  t.is(sameKey.stderr, "f2bz keys: this key is already authorized as monitor 'web1'\n");
  // Another key under an existing name.
  const r2 = await runCli(["keygen", "--name", "web1", "--dir", path.join(nodes, "second")]);
  t.is(r2.code, 0);
  const sameName = await keysCli("add", "monitor", path.join(nodes, "second", "web1.key"));
  t.is(sameName.code, 65);
  oneLine(t, sameName);
  t.is(sameName.stderr, "f2bz keys: a monitor key named 'web1' is already authorized\n");
  t.deepEqual(await ls(path.join(keys, "authorized", "monitors")), ["web1.key"]);
});

test("keys add refuses a secret key file and writes nothing", async (t) => {
  const { nodes, keys, keysCli } = await setup(t);
  const secret = path.join(nodes, "web1.key_secret");
  const r = await keysCli("add", "subscriber", secret);
  t.is(r.code, 65);
  oneLine(t, r);
  t.is(r.stderr, `f2bz keys: key file '${secret}' contains a secret key, expected a public certificate\n`);
  t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), []);
});

test("keys add accepts a CURVE-only certificate as a subscriber, not as a monitor", async (t) => {
  const { dir, keysCli } = await setup(t, []);
  const file = path.join(dir, "czmq.key");
  const curve = z85Encode((await generateIdentity("czmq")).curvePublic);
  await writeFile(file, `metadata\n    name = "czmq"\ncurve\n    public-key = "${curve}"\n`);
  const monitor = await keysCli("add", "monitor", file);
  t.is(monitor.code, 65);
  oneLine(t, monitor);
  t.regex(monitor.stderr, /has no 'sign\/verify-key', which a monitor needs to sign events\n$/);
  const subscriber = await keysCli("add", "subscriber", file);
  t.is(subscriber.code, 0, subscriber.stderr);
});

test("keys revoke moves the file to revoked/, list shows it revoked, and add refuses it", async (t) => {
  const { keys, keysCli, pub } = await setup(t);
  t.is((await keysCli("add", "monitor", pub("web1"))).code, 0);
  t.is((await keysCli("add", "subscriber", pub("web1"))).code, 0);
  t.is((await keysCli("add", "subscriber", pub("web2"))).code, 0);
  const r = await keysCli("revoke", "web1");
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, "revoked monitor web1\nrevoked subscriber web1\n");
  t.deepEqual(await ls(path.join(keys, "authorized", "monitors")), []);
  t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), ["web2.key"]);
  t.deepEqual(await ls(path.join(keys, "revoked")), ["web1.key"]);
  const identity = await loadPublicIdentity(pub("web1"));
  const list = await keysCli("list");
  t.is(list.code, 0);
  t.regex(list.stdout, /^subscriber +web2 +active /m);
  t.true(
    list.stdout.includes(
      `revoked     web1                  revoked        ${identity.nodeId}  ${fingerprint(identity.curvePublic)}`,
    ),
    list.stdout,
  );
  const again = await keysCli("add", "subscriber", pub("web1"));
  t.is(again.code, 65);
  oneLine(t, again);
  t.is(
    again.stderr,
    `f2bz keys: key 'web1' is revoked; remove it from '${path.join(keys, "revoked")}' first\n`,
  );
  // Under another name too: revocation follows the key, not the name.
  const renamed = await runCli(["keys", "add", "subscriber", pub("web1"), "--keys", keys, "--name", "new"]);
  t.is(renamed.code, 65);
});

test("revoking a name again never replaces an earlier revocation of another key", async (t) => {
  const { nodes, keys, keysCli, pub } = await setup(t, ["web1"]);
  t.is((await keysCli("add", "subscriber", pub("web1"))).code, 0);
  t.is((await keysCli("revoke", "web1")).code, 0);
  // The host is rebuilt with a new key under the same name, which is then revoked as well.
  t.is((await runCli(["keygen", "--name", "web1", "--dir", path.join(nodes, "new")])).code, 0);
  const second = path.join(nodes, "new", "web1.key");
  t.is((await keysCli("add", "subscriber", second)).code, 0);
  t.is((await keysCli("revoke", "web1")).code, 0);
  t.deepEqual(await ls(path.join(keys, "revoked")), ["web1.2.key", "web1.key"]);
  for (const file of [pub("web1"), second]) {
    const r = await keysCli("add", "subscriber", file);
    t.is(r.code, 65, `${file} must stay revoked`);
  }
});

test("keys revoke of an unknown name fails with one line", async (t) => {
  const { keys, keysCli } = await setup(t, []);
  const r = await keysCli("revoke", "ghost");
  t.is(r.code, 66);
  oneLine(t, r);
  t.is(r.stderr, `f2bz keys: no authorized key named 'ghost' in '${keys}'\n`);
});

test("keys list on an empty directory says so", async (t) => {
  const { keys, keysCli } = await setup(t, []);
  const r = await keysCli("list");
  t.is(r.code, 0);
  t.is(r.stdout, `no keys in ${keys}\n`);
});

/** A pending record as the publisher writes it (src/transport/pending.ts): untrusted metadata, a CURVE key. */
function pendingFile(curveZ85: string, role: string, address: string, extra = "") {
  return [
    "#   ****  Recorded by the f2bz publisher  ****",
    "",
    "metadata",
    `    name = "${pendingId(z85Decode(curveZ85))}"`,
    `    role = "${role}"`,
    `    address = "${address}"`,
    '    first-seen = "2025-01-02T03:04:05.000Z"',
    "curve",
    `    public-key = "${curveZ85}"`,
    extra,
  ].join("\n");
}

async function writePending(keys: string, text: string, curveZ85: string) {
  await mkdir(path.join(keys, "pending"), { recursive: true });
  const id = pendingId(z85Decode(curveZ85));
  await writeFile(path.join(keys, "pending", `${id}.key`), text);
  return id;
}

test("keys pending lists unknown keys, with untrusted text made printable", async (t) => {
  const { keys, keysCli, pub } = await setup(t, ["web1"]);
  const curve = z85Encode((await loadPublicIdentity(pub("web1"))).curvePublic);
  const id = await writePending(keys, pendingFile(curve, "subscriber", "192.0.2.7\x1b[2J"), curve);
  const r = await keysCli("pending");
  t.is(r.code, 0, r.stderr);
  const identity = await loadPublicIdentity(pub("web1"));
  t.is(
    r.stdout,
    `${id}  wants subscriber  from 192.0.2.7?[2J  first seen 2025-01-02T03:04:05.000Z  ${fingerprint(identity.curvePublic)}\n`,
  );
  t.false(r.stdout.includes("\x1b"));
});

test("keys pending with nothing pending says so", async (t) => {
  const { keysCli } = await setup(t, []);
  const r = await keysCli("pending");
  t.is(r.code, 0);
  t.is(r.stdout, "no pending keys\n");
});

test("keys accept moves a pending subscriber into authorized/subscribers", async (t) => {
  const { keys, keysCli, pub } = await setup(t, ["web1"]);
  const identity = await loadPublicIdentity(pub("web1"));
  const curve = z85Encode(identity.curvePublic);
  const id = await writePending(keys, pendingFile(curve, "subscriber", "192.0.2.7"), curve);
  const r = await keysCli("accept", id);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`^authorized subscriber ${id}: `));
  t.deepEqual(await ls(path.join(keys, "pending")), []);
  t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), [`${id}.key`]);
  const accepted = await loadPublicIdentity(path.join(keys, "authorized", "subscribers", `${id}.key`));
  t.deepEqual(accepted.curvePublic, identity.curvePublic);
  const list = await keysCli("list");
  t.regex(list.stdout, new RegExp(`^subscriber +${id} +active `, "m"));
});

test("keys accept --role and --name override what the pending file asked for", async (t) => {
  const { keys, pub } = await setup(t, ["web1"]);
  const curve = z85Encode((await loadPublicIdentity(pub("web1"))).curvePublic);
  const id = await writePending(keys, pendingFile(curve, "monitor", "192.0.2.7"), curve);
  const r = await runCli(["keys", "accept", id, "--role", "subscriber", "--name", "web1", "--keys", keys]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), ["web1.key"]);
});

test("keys accept refuses a pending monitor without a verify key and keeps the record", async (t) => {
  const { keys, keysCli, pub } = await setup(t, ["web1"]);
  const curve = z85Encode((await loadPublicIdentity(pub("web1"))).curvePublic);
  const id = await writePending(keys, pendingFile(curve, "monitor", "192.0.2.7"), curve);
  const r = await keysCli("accept", id);
  t.is(r.code, 65);
  oneLine(t, r);
  t.regex(r.stderr, /has no verify key, which a monitor needs: add the monitor's own \.key file/);
  t.deepEqual(await ls(path.join(keys, "pending")), [`${id}.key`]);
  t.deepEqual(await ls(path.join(keys, "authorized", "monitors")), []);
});

test("keys accept takes a pending monitor that carries its verify key", async (t) => {
  const { keys, keysCli, pub } = await setup(t, ["web1"]);
  const identity = await loadPublicIdentity(pub("web1"));
  const curve = z85Encode(identity.curvePublic);
  const sign = `sign\n    verify-key = "${z85Encode(identity.signPublic!)}"\n`;
  const id = await writePending(keys, pendingFile(curve, "monitor", "192.0.2.7", sign), curve);
  const r = await keysCli("accept", id);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(await ls(path.join(keys, "authorized", "monitors")), [`${id}.key`]);
  t.deepEqual(await ls(path.join(keys, "pending")), []);
});

test("keys accept of an unknown or malformed pending record fails with one line", async (t) => {
  const { keys, keysCli } = await setup(t, []);
  const missing = await keysCli("accept", "0123456789abcdef");
  t.is(missing.code, 66);
  oneLine(t, missing);
  t.is(missing.stderr, `f2bz keys: no pending key '0123456789abcdef' in '${path.join(keys, "pending")}'\n`);
  await mkdir(path.join(keys, "pending"), { recursive: true });
  await writeFile(path.join(keys, "pending", "bad.key"), "metadata\n  role = 'x'\n");
  const bad = await keysCli("accept", "bad");
  t.is(bad.code, 65);
  oneLine(t, bad);
  t.regex(bad.stderr, /is not a zpl certificate \(line 2: indentation must be a multiple of 4 spaces\)/);
});

test("keys finds its directory through the config's publisher.keys", async (t) => {
  const { dir, keys, pub } = await setup(t, ["web1"]);
  const config = path.join(dir, "f2bz.yaml");
  await writeFile(
    config,
    "node:\n  name: pub1\n  identity: nodes/web1.key_secret\npublisher:\n  keys: keys\n",
  );
  const r = await runCli(["keys", "add", "subscriber", pub("web1"), "--config", config], { cwd: "/" });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(await ls(path.join(keys, "authorized", "subscribers")), ["web1.key"]);
  await writeFile(config, "node:\n  name: web1\n  identity: nodes/web1.key_secret\n");
  const none = await runCli(["keys", "list", "--config", config]);
  t.is(none.code, 64);
  oneLine(t, none);
  t.regex(none.stderr, /has no 'publisher' section; use --keys DIR/);
});

for (const [args, pattern] of [
  [[], /unknown keys command '', expected add, list, revoke, pending or accept/],
  [["frobnicate"], /unknown keys command 'frobnicate'/],
  [["add", "monitor"], /'keys add' takes a role and a FILE, got 1 arguments/],
  [["add", "admin", "x.key"], /role 'admin' is invalid, expected 'monitor' or 'subscriber'/],
  [["revoke"], /'keys revoke' takes a NAME, got 0 arguments/],
  [["revoke", "../x"], /key name '\.\.\/x' is invalid/],
] as const) {
  test(`keys usage error: ${args.join(" ") || "(nothing)"}`, async (t) => {
    const dir = await tempDir(t);
    const r = await runCli(["keys", ...args, "--keys", dir]);
    t.is(r.code, 64);
    oneLine(t, r);
    t.regex(r.stderr, pattern);
  });
}
