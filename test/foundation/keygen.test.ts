import { lstat, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import { loadPublicIdentity, loadSecretIdentity } from "../../src/keys/files.js";
import { fingerprint } from "../../src/keys/identity.js";
import { z85Encode } from "../../src/keys/z85.js";
import { type CliResult, runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp-dir.js";
import { czmqLoadCertificate, pyzmqLoadCertificate } from "./reference-readers.js";

const mode = async (file: string) => (await lstat(file)).mode & 0o777;

/** A user error is one line on stderr, never a stack trace. */
function assertOneLineError(
  t: { is: (a: unknown, b: unknown) => void; false: (v: boolean) => void },
  r: CliResult,
) {
  const lines = r.stderr.trimEnd().split("\n");
  t.is(lines.length, 1);
  t.false(r.stderr.includes("    at "));
}

for (const umask of [0o000, 0o022, 0o077]) {
  test(`keygen writes NAME.key 0644 and NAME.key_secret 0600 under umask ${umask.toString(8).padStart(3, "0")}`, async (t) => {
    const dir = await tempDir(t);
    const r = await runCli(["keygen", "--name", "web1", "--dir", dir], { umask });
    t.is(r.code, 0, r.stderr);
    t.is(r.stderr, "");
    t.is(await mode(path.join(dir, "web1.key")), 0o644);
    t.is(await mode(path.join(dir, "web1.key_secret")), 0o600);
  });
}

test("keygen prints the node id and the fingerprints of the keys it wrote", async (t) => {
  const dir = await tempDir(t);
  const r = await runCli(["keygen", "--name", "web1", "--dir", dir]);
  t.is(r.code, 0, r.stderr);
  const secret = await loadSecretIdentity(path.join(dir, "web1.key_secret"));
  const pub = await loadPublicIdentity(path.join(dir, "web1.key"));
  t.is(pub.nodeId, secret.nodeId);
  t.deepEqual(pub.curvePublic, secret.curvePublic);
  t.deepEqual(pub.signPublic, secret.signPublic);
  t.is(secret.name, "web1");
  const lines = r.stdout.trimEnd().split("\n");
  t.regex(lines[0]!, /^wrote .*web1\.key \(public, 0644\) and .*web1\.key_secret \(secret, 0600\)$/);
  t.is(lines[1], `node id:           ${secret.nodeId}`);
  t.is(lines[2], `curve fingerprint: ${fingerprint(secret.curvePublic)}`);
  t.is(lines[3], `sign fingerprint:  ${fingerprint(secret.signPublic)}`);
  t.regex(secret.nodeId, /^[0-9a-f]{32}$/);
  t.regex(fingerprint(secret.curvePublic), /^SHA256:[A-Za-z0-9+/]{43}$/);
});

test("the public file carries no secret", async (t) => {
  const dir = await tempDir(t);
  t.is((await runCli(["keygen", "--name", "web1", "--dir", dir])).code, 0);
  const text = await readFile(path.join(dir, "web1.key"), "utf8");
  const secret = await loadSecretIdentity(path.join(dir, "web1.key_secret"));
  t.false(/secret-key|signing-key/.test(text));
  t.false(text.includes(z85Encode(secret.curveSecret)));
  t.false(text.includes(z85Encode(secret.signSecret.subarray(0, 32))));
  t.true(text.includes(z85Encode(secret.curvePublic)));
});

test("keygen refuses to overwrite without --force and leaves both files unchanged", async (t) => {
  const dir = await tempDir(t);
  t.is((await runCli(["keygen", "--name", "web1", "--dir", dir])).code, 0);
  const before = [
    await readFile(path.join(dir, "web1.key")),
    await readFile(path.join(dir, "web1.key_secret")),
  ];
  const r = await runCli(["keygen", "--name", "web1", "--dir", dir]);
  t.not(r.code, 0);
  t.is(r.code, 73);
  assertOneLineError(t, r);
  t.regex(r.stderr, /^f2bz keygen: key file '.*web1\.key' already exists, use --force to replace it\n$/);
  t.is(r.stdout, "");
  t.deepEqual(await readFile(path.join(dir, "web1.key")), before[0]);
  t.deepEqual(await readFile(path.join(dir, "web1.key_secret")), before[1]);
});

test("keygen refuses when only the secret file exists, and writes nothing", async (t) => {
  const dir = await tempDir(t);
  await writeFile(path.join(dir, "web1.key_secret"), "precious", { mode: 0o600 });
  const r = await runCli(["keygen", "--name", "web1", "--dir", dir]);
  t.is(r.code, 73);
  assertOneLineError(t, r);
  t.is(await readFile(path.join(dir, "web1.key_secret"), "utf8"), "precious");
  await t.throwsAsync(lstat(path.join(dir, "web1.key")));
});

test("keygen --force replaces both files with a new identity, modes intact", async (t) => {
  const dir = await tempDir(t);
  t.is((await runCli(["keygen", "--name", "web1", "--dir", dir])).code, 0);
  const old = await loadSecretIdentity(path.join(dir, "web1.key_secret"));
  const r = await runCli(["keygen", "--name", "web1", "--dir", dir, "--force"], { umask: 0 });
  t.is(r.code, 0, r.stderr);
  const fresh = await loadSecretIdentity(path.join(dir, "web1.key_secret"));
  t.notDeepEqual(fresh.curvePublic, old.curvePublic);
  t.not(fresh.nodeId, old.nodeId);
  t.is((await loadPublicIdentity(path.join(dir, "web1.key"))).nodeId, fresh.nodeId);
  t.is(await mode(path.join(dir, "web1.key")), 0o644);
  t.is(await mode(path.join(dir, "web1.key_secret")), 0o600);
  t.true(r.stdout.includes(fresh.nodeId));
});

test("keygen leaves no temporary files behind", async (t) => {
  const dir = await tempDir(t);
  t.is((await runCli(["keygen", "--name", "web1", "--dir", dir])).code, 0);
  t.is((await runCli(["keygen", "--name", "web1", "--dir", dir, "--force"])).code, 0);
  t.is((await runCli(["keygen", "--name", "web1", "--dir", dir])).code, 73);
  t.deepEqual((await readdir(dir)).sort(), ["web1.key", "web1.key_secret"]);
});

for (const [args, pattern] of [
  [["keygen", "--dir", "x"], /missing --name NAME/],
  [["keygen", "--name", "../evil"], /key name '\.\.\/evil' is invalid/],
  [["keygen", "--name", "a b"], /key name 'a b' is invalid/],
  [["keygen", "--name", "web1", "extra"], /unexpected argument 'extra'/],
] as const) {
  test(`keygen usage error: ${args.slice(1).join(" ")}`, async (t) => {
    const dir = await tempDir(t);
    const r = await runCli(args, { cwd: dir });
    t.is(r.code, 64);
    assertOneLineError(t, r);
    t.regex(r.stderr, pattern);
    t.deepEqual(await readdir(dir), []);
  });
}

test("pyzmq's certificate loader reads the CURVE keys that f2bz parses", async (t) => {
  const dir = await tempDir(t);
  t.is((await runCli(["keygen", "--name", "web1", "--dir", dir])).code, 0);
  const secret = await loadSecretIdentity(path.join(dir, "web1.key_secret"));
  const fromPublic = pyzmqLoadCertificate(await readFile(path.join(dir, "web1.key"), "utf8"));
  t.is(fromPublic.publicKey, z85Encode(secret.curvePublic));
  t.is(fromPublic.secretKey, undefined);
  const fromSecret = pyzmqLoadCertificate(await readFile(path.join(dir, "web1.key_secret"), "utf8"));
  t.is(fromSecret.publicKey, z85Encode(secret.curvePublic));
  t.is(fromSecret.secretKey, z85Encode(secret.curveSecret));
});

test("CZMQ's zconfig/zcert reader reads the CURVE keys and metadata that f2bz parses", async (t) => {
  const dir = await tempDir(t);
  t.is((await runCli(["keygen", "--name", "web1", "--dir", dir])).code, 0);
  const secret = await loadSecretIdentity(path.join(dir, "web1.key_secret"));
  const fromPublic = czmqLoadCertificate(await readFile(path.join(dir, "web1.key"), "utf8"));
  t.is(fromPublic.publicKey, z85Encode(secret.curvePublic));
  t.is(fromPublic.secretKey, undefined);
  t.is(fromPublic.metadata.name, "web1");
  t.is(fromPublic.metadata["node-id"], secret.nodeId);
  const fromSecret = czmqLoadCertificate(await readFile(path.join(dir, "web1.key_secret"), "utf8"));
  t.is(fromSecret.publicKey, z85Encode(secret.curvePublic));
  t.is(fromSecret.secretKey, z85Encode(secret.curveSecret));
});
