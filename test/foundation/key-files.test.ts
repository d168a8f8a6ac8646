import { chmod, chown, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { F2bzError } from "../../src/errors.js";
import { loadPublicIdentity, loadSecretIdentity, writeIdentity } from "../../src/keys/files.js";
import { generateIdentity, nodeIdOf } from "../../src/keys/identity.js";
import { z85Decode, z85Encode } from "../../src/keys/z85.js";
import { asRoot } from "../helpers/skip.js";
import { tempDir } from "../helpers/temp-dir.js";

async function newIdentity(dir: string, name = "web1") {
  const identity = await generateIdentity(name);
  const files = await writeIdentity(dir, identity, false);
  return { identity, ...files };
}

const rootTest = asRoot(test, "the key file tests that chown to another user");

test("a freshly written identity loads back, secret and public", async (t) => {
  const dir = await tempDir(t);
  const { identity, publicFile, secretFile } = await newIdentity(dir);
  const secret = await loadSecretIdentity(secretFile);
  t.deepEqual(secret.curveSecret, identity.curveSecret);
  t.deepEqual(secret.signSecret, identity.signSecret);
  t.is(secret.nodeId, nodeIdOf(identity.signPublic));
  const pub = await loadPublicIdentity(publicFile);
  t.deepEqual(pub.curvePublic, identity.curvePublic);
  t.false("curveSecret" in pub);
});

for (const mode of [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o601]) {
  const octal = mode.toString(8).padStart(4, "0");
  test(`a secret key file with mode ${octal} is refused like ssh does`, async (t) => {
    const dir = await tempDir(t);
    const { secretFile } = await newIdentity(dir);
    await chmod(secretFile, mode);
    const error = await t.throwsAsync(loadSecretIdentity(secretFile), { instanceOf: F2bzError });
    t.is(error?.code, "KEY_PERMISSIONS");
    t.is(error?.message, `key file '${secretFile}' has mode ${octal}, expected 0600`);
  });
}

test("a secret key file with mode 0700 or 0400 has no group/other bits and loads", async (t) => {
  const dir = await tempDir(t);
  const { secretFile } = await newIdentity(dir);
  for (const mode of [0o400, 0o700, 0o600]) {
    await chmod(secretFile, mode);
    await t.notThrowsAsync(loadSecretIdentity(secretFile));
  }
});

test("a secret key file reached through a symlink is refused", async (t) => {
  const dir = await tempDir(t);
  const { secretFile } = await newIdentity(dir);
  const link = path.join(dir, "link.key_secret");
  await symlink(secretFile, link);
  const error = await t.throwsAsync(loadSecretIdentity(link), { instanceOf: F2bzError });
  t.is(error?.code, "KEY_PERMISSIONS");
  t.is(error?.message, `key file '${link}' is a symlink, expected a regular file`);
});

test("a public key file reached through a symlink is refused too", async (t) => {
  const dir = await tempDir(t);
  const { publicFile } = await newIdentity(dir);
  const link = path.join(dir, "link.key");
  await symlink(publicFile, link);
  await t.throwsAsync(loadPublicIdentity(link), { instanceOf: F2bzError, message: /is a symlink/ });
});

rootTest("a secret key file owned by another user is refused", async (t) => {
  const dir = await tempDir(t);
  const { secretFile } = await newIdentity(dir);
  await chown(secretFile, 65534, 65534);
  const error = await t.throwsAsync(loadSecretIdentity(secretFile), { instanceOf: F2bzError });
  t.is(error?.code, "KEY_PERMISSIONS");
  t.is(error?.message, `key file '${secretFile}' is owned by uid 65534, expected uid 0 or root`);
});

test("a missing key file, a directory and an oversized file are refused", async (t) => {
  const dir = await tempDir(t);
  const missing = path.join(dir, "nope.key_secret");
  const e1 = await t.throwsAsync(loadSecretIdentity(missing), { instanceOf: F2bzError });
  t.is(e1?.code, "KEY_NOT_FOUND");
  t.is(e1?.message, `key file '${missing}' does not exist`);
  const sub = path.join(dir, "sub.key");
  await mkdir(sub);
  await t.throwsAsync(loadPublicIdentity(sub), { instanceOf: F2bzError, message: /is not a regular file/ });
  const big = path.join(dir, "big.key");
  await writeFile(big, `#${"x".repeat(5000)}\n`);
  await t.throwsAsync(loadPublicIdentity(big), { instanceOf: F2bzError, message: /expected at most 4096/ });
});

async function secretVariant(t: ExecutionContext, edit: (text: string) => string) {
  const dir = await tempDir(t);
  const { secretFile } = await newIdentity(dir);
  const text = await readFile(secretFile, "utf8");
  const file = path.join(dir, "edited.key_secret");
  await writeFile(file, edit(text), { mode: 0o600 });
  return file;
}

const malformed: [string, (text: string) => string, RegExp][] = [
  [
    "not zpl at all",
    () => "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    /is not a zpl certificate \(line 1: invalid name/,
  ],
  [
    "no curve secret",
    (s) => s.replace(/^ {4}secret-key = .*\n/m, ""),
    /has no 'curve\/public-key' and 'curve\/secret-key'/,
  ],
  [
    "no signing key",
    (s) => s.replace(/^ {4}signing-key = .*\n/m, ""),
    /has no 'sign\/verify-key' and 'sign\/signing-key'/,
  ],
  [
    "a bad z85 character",
    (s) => s.replace(/secret-key = "./, 'secret-key = "~'),
    /has an invalid z85 value at 'curve\/secret-key'/,
  ],
  [
    "a short key",
    (s) => s.replace(/secret-key = "(.{20}).*"/, 'secret-key = "$1"'),
    /has a 16-byte key at 'curve\/secret-key', expected 32/,
  ],
  [
    "a duplicate secret-key",
    (s) => s.replace(/^( {4}secret-key = .*\n)/m, "$1$1"),
    /\(line 11: duplicate entry\)$/,
  ],
  ["an unterminated quote", (s) => s.replace(/(secret-key = "[^"]*)"/, "$1"), /unterminated quoted value/],
];
for (const [what, edit, message] of malformed) {
  test(`a malformed secret key file is refused: ${what}`, async (t) => {
    const file = await secretVariant(t, edit);
    const error = await t.throwsAsync(loadSecretIdentity(file), { instanceOf: F2bzError, message });
    t.is(error?.code, "KEY_INVALID");
    t.true(error?.message.startsWith(`key file '${file}' `));
  });
}

test("a secret key file whose public keys belong to another identity is refused", async (t) => {
  const other = await generateIdentity("other");
  const curve = await secretVariant(t, (s) =>
    // A function, not a string: Z85 has `$`, and "$&" or "$'" in a replacement string are patterns.
    s.replace(/public-key = "[^"]*"/, () => `public-key = "${z85Encode(other.curvePublic)}"`),
  );
  await t.throwsAsync(loadSecretIdentity(curve), {
    instanceOf: F2bzError,
    message: /has a curve public key that does not match its secret key$/,
  });
  const sign = await secretVariant(t, (s) =>
    s.replace(/verify-key = "[^"]*"/, () => `verify-key = "${z85Encode(other.signPublic)}"`),
  );
  await t.throwsAsync(loadSecretIdentity(sign), {
    instanceOf: F2bzError,
    message: /has a verify key that does not match its signing key$/,
  });
});

test("a public or authorized key file that holds a secret is refused", async (t) => {
  const dir = await tempDir(t);
  const { secretFile } = await newIdentity(dir);
  const error = await t.throwsAsync(loadPublicIdentity(secretFile), { instanceOf: F2bzError });
  t.is(error?.code, "KEY_INVALID");
  t.is(error?.message, `key file '${secretFile}' contains a secret key, expected a public certificate`);
  // Only one of the two secrets is enough.
  const text = await readFile(secretFile, "utf8");
  const onlySign = path.join(dir, "only-sign.key");
  await writeFile(onlySign, text.replace(/^ {4}secret-key = .*\n/m, ""));
  await t.throwsAsync(loadPublicIdentity(onlySign), { message: /contains a secret key/ });
});

test("a CZMQ/pyzmq certificate without a sign section is accepted as a public key", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "czmq.key");
  // As pyzmq's create_certificates and CZMQ's zcert_save_public write it.
  const curve = z85Encode((await generateIdentity("czmq")).curvePublic);
  await writeFile(
    file,
    [
      "#   ****  Generated on 2024-01-01 00:00:00 by CZMQ  ****",
      "#   ZeroMQ CURVE Public Certificate",
      "#   Exchange securely, or use a secure mechanism to verify the contents",
      "#   of this file after exchange. Store public certificates in your home",
      "#   directory, in the .curve subdirectory.",
      "",
      "metadata",
      '    name = "czmq-client"',
      "curve",
      `    public-key = "${curve}"`,
      "",
    ].join("\n"),
  );
  const identity = await loadPublicIdentity(file);
  t.deepEqual(identity.curvePublic, z85Decode(curve));
  t.is(identity.signPublic, undefined);
  t.is(identity.name, "czmq-client");
  t.is(identity.nodeId, nodeIdOf(identity.curvePublic));
});

test("a public key file without a curve key is refused", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "empty.key");
  await writeFile(file, 'metadata\n    name = "x"\n');
  await t.throwsAsync(loadPublicIdentity(file), {
    instanceOf: F2bzError,
    message: /has no 'curve\/public-key'$/,
  });
});

test("public key files need no particular mode or owner", async (t) => {
  const dir = await tempDir(t);
  const { publicFile } = await newIdentity(dir);
  await chmod(publicFile, 0o644);
  await t.notThrowsAsync(loadPublicIdentity(publicFile));
});

test("a certificate holding a curve key published in libzmq's documentation is refused", async (t) => {
  const dir = await tempDir(t);
  for (const published of [
    "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID",
    "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
  ]) {
    const file = path.join(dir, "published.key");
    await writeFile(file, `metadata\n    name = "test"\ncurve\n    public-key = "${published}"\n`);
    const error = await t.throwsAsync(loadPublicIdentity(file), { instanceOf: F2bzError });
    t.is(error?.code, "KEY_INVALID");
    t.is(
      error?.message,
      `key file '${file}' holds a curve key published in libzmq's documentation, expected a key made by f2bz keygen`,
    );
  }
});

test("a secret key in a directory others may write is refused, as ssh's StrictModes does", async (t) => {
  const dir = await tempDir(t);
  const keys = path.join(dir, "keys");
  const { secretFile } = await newIdentity(keys);
  for (const mode of [0o775, 0o757, 0o1777]) {
    await chmod(keys, mode);
    const error = await t.throwsAsync(loadSecretIdentity(secretFile), { instanceOf: F2bzError });
    t.is(error?.code, "KEY_PERMISSIONS");
    t.is(
      error?.message,
      `key directory '${keys}' has mode ${mode.toString(8).padStart(4, "0")}, expected no write permission for group or others`,
    );
  }
  await chmod(keys, 0o755);
  await t.notThrowsAsync(loadSecretIdentity(secretFile));
});

rootTest("a secret key in a directory owned by another user is refused", async (t) => {
  const dir = await tempDir(t);
  const keys = path.join(dir, "keys");
  const { secretFile } = await newIdentity(keys);
  await chown(keys, 65534, 65534);
  const error = await t.throwsAsync(loadSecretIdentity(secretFile), { instanceOf: F2bzError });
  t.is(error?.code, "KEY_PERMISSIONS");
  t.is(error?.message, `key directory '${keys}' is owned by uid 65534, expected uid 0 or root`);
});

test("authorized and revoked keys are access tokens: writable by others, they are skipped and reported", async (t) => {
  const { ensureLayout, loadKeySet, roleDir } = await import("../../src/keys/store.js");
  const dir = await tempDir(t);
  const keys = path.join(dir, "keys");
  await ensureLayout(keys);
  const { publicFile } = await newIdentity(path.join(dir, "made"));
  const authorized = path.join(roleDir(keys, "subscriber"), "web1.key");
  await writeFile(authorized, await readFile(publicFile));
  await chmod(authorized, 0o644);
  t.is((await loadKeySet(keys)).set.subscribers.length, 1);

  await chmod(authorized, 0o664);
  const file = await loadKeySet(keys);
  t.is(file.set.subscribers.length, 0);
  t.deepEqual(file.skipped, [
    {
      file: authorized,
      code: "KEY_PERMISSIONS",
      reason: `key file '${authorized}' has mode 0664, expected no write permission for group or others`,
    },
  ]);
  await chmod(authorized, 0o644);

  const revoked = path.join(keys, "revoked");
  await chmod(revoked, 0o777);
  const directory = await loadKeySet(keys);
  t.deepEqual(
    directory.skipped.map((s) => s.reason),
    [`key directory '${revoked}' has mode 0777, expected no write permission for group or others`],
  );
  await chmod(revoked, 0o755);
  t.is((await loadKeySet(keys)).set.subscribers.length, 1);
});
