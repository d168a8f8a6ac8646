import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { formatPublicCertificate, generateIdentity } from "../../src/keys/identity.js";
import { pendingDir, pendingId, revokedDir, roleDir } from "../../src/keys/store.js";
import { z85Encode } from "../../src/keys/z85.js";
import { parseZpl } from "../../src/keys/zpl.js";
import { Metrics } from "../../src/metrics/registry.js";
import { AccessControl } from "../../src/transport/access.js";
import type { ZapDomain } from "../../src/transport/sockets.js";
import { waitFor } from "../harness/wait.js";
import {
  authorize,
  callbackWaiter,
  captureLogger,
  identity,
  keysCli,
  keysDir,
  openAccess,
  revoke,
  silentLogger,
} from "./helpers.js";

test("the registry maps each directory to its domain, and revoked/ wins by key and by node id", async (t) => {
  const dir = await keysDir(t);
  const [monitor, subscriber, revokedByKey, revokedByNode] = await Promise.all(
    ["mon", "sub", "gone", "stolen"].map((n) => identity(n)),
  );
  await authorize(dir, "monitor", monitor!);
  await authorize(dir, "subscriber", subscriber!);
  await authorize(dir, "subscriber", revokedByKey!);
  await authorize(dir, "subscriber", revokedByNode!);
  await fs.writeFile(path.join(revokedDir(dir), "gone.key"), formatPublicCertificate(revokedByKey!));
  // Same node (verify key), another CURVE key: the node is revoked, whatever CURVE key it shows.
  const sameNode = { ...revokedByNode!, curvePublic: (await generateIdentity("x")).curvePublic };
  await fs.writeFile(path.join(revokedDir(dir), "stolen.key"), formatPublicCertificate(sameNode));
  const { logger, lines } = captureLogger();
  const { access } = await openAccess(t, dir, { pollMs: 0, logger });

  t.deepEqual(access.lookup("submit", monitor!.curvePublic), { nodeId: monitor!.nodeId, name: "mon" });
  t.deepEqual(access.lookup("feed", subscriber!.curvePublic), { nodeId: subscriber!.nodeId, name: "sub" });
  t.is(access.lookup("feed", monitor!.curvePublic), undefined);
  t.is(access.lookup("submit", subscriber!.curvePublic), undefined);
  t.is(access.lookup("feed", revokedByKey!.curvePublic), undefined);
  t.is(access.lookup("feed", revokedByNode!.curvePublic), undefined);
  t.true(access.isRevoked(revokedByKey!.curvePublic));
  t.true(access.isRevoked(revokedByNode!.curvePublic));
  t.false(access.isRevoked(subscriber!.curvePublic));
  t.is(access.lookup("feed", (await identity("stranger")).curvePublic), undefined);
  t.like(
    lines.find((l) => l.msg === "keys loaded"),
    { monitors: 1, subscribers: 1, revoked: 2, skipped: 0 },
  );
});

test("bad entries at start are skipped, counted and logged; the others load", async (t) => {
  const dir = await keysDir(t);
  const [good, twin] = await Promise.all(["good", "twin"].map((n) => identity(n)));
  await authorize(dir, "subscriber", good!);
  await authorize(dir, "subscriber", good!, "zz-copy");
  await authorize(dir, "subscriber", twin!);
  await fs.chmod(path.join(roleDir(dir, "subscriber"), "twin.key"), 0o664);
  const bad = path.join(roleDir(dir, "subscriber"), "bad.key");
  await fs.writeFile(bad, 'curve\n    public-key = "short"\n');
  const metrics = new Metrics("publisher");
  const { logger, lines } = captureLogger();
  const { access } = await openAccess(t, dir, { pollMs: 0, metrics, logger });

  t.deepEqual(access.lookup("feed", good!.curvePublic), { nodeId: good!.nodeId, name: "good" });
  t.is(access.lookup("feed", twin!.curvePublic), undefined);
  const files = ["bad.key", "twin.key", "zz-copy.key"].map((n) => path.join(roleDir(dir, "subscriber"), n));
  t.deepEqual(
    access.skipped.map((s) => [s.file, s.code]),
    [
      [files[0], "KEY_INVALID"],
      [files[1], "KEY_PERMISSIONS"],
      [files[2], "KEY_DUPLICATE"],
    ],
  );
  t.is(metrics.get("keys_skipped_total"), 3);
  t.deepEqual(
    lines.filter((l) => l.msg === "key skipped").map((l) => l.file),
    files,
  );
});

test("a revoked/ that cannot be listed refuses to start: what is revoked would be unknown", async (t) => {
  const dir = await keysDir(t);
  await fs.rm(revokedDir(dir), { recursive: true });
  await fs.writeFile(revokedDir(dir), "not a directory\n");
  const error = await t.throwsAsync(AccessControl.open(dir, { logger: silentLogger(), pollMs: 0 }));
  t.true(error instanceof F2bzError && error.code === "IO_FAILED", String(error));
});

test("changes are picked up by polling; removals and revocations name their domain", async (t) => {
  const dir = await keysDir(t);
  const [monitor, first, second] = await Promise.all(["mon", "sub1", "sub2"].map((n) => identity(n)));
  await authorize(dir, "monitor", monitor!);
  await authorize(dir, "subscriber", first!);
  const removed = callbackWaiter<ZapDomain>();
  const { access, reloads } = await openAccess(t, dir, { onRemoved: removed.callback });

  await authorize(dir, "subscriber", second!);
  await reloads.waitFor(
    () => access.lookup("feed", second!.curvePublic) !== undefined,
    "sub2 to be admitted",
  );
  t.deepEqual(removed.calls, []);

  await fs.unlink(path.join(roleDir(dir, "subscriber"), "sub1.key"));
  await removed.waitFor((d) => d === "feed", "onRemoved(feed)");
  t.is(access.lookup("feed", first!.curvePublic), undefined);
  t.truthy(access.lookup("feed", second!.curvePublic));

  await revoke(dir, "monitor", "mon");
  await removed.waitFor((d) => d === "submit", "onRemoved(submit)");
  t.is(access.lookup("submit", monitor!.curvePublic), undefined);
  t.true(access.isRevoked(monitor!.curvePublic));
  t.deepEqual(removed.calls, ["feed", "submit"]);
});

test("a bad entry never holds back a removal or a revocation: it alone is skipped", async (t) => {
  const dir = await keysDir(t);
  const [kept, removedKey, revokedKey, added, stray] = await Promise.all(
    ["kept", "removed", "revoked", "added", "stray"].map((n) => identity(n)),
  );
  for (const node of [kept!, removedKey!, revokedKey!]) await authorize(dir, "subscriber", node);
  const metrics = new Metrics("publisher");
  const removed = callbackWaiter<ZapDomain>();
  const { access, reloads } = await openAccess(t, dir, { metrics, onRemoved: removed.callback });

  // Issue 10: one file others may write kept the whole previous set, revoked keys included.
  await fs.chmod(await authorize(dir, "subscriber", stray!), 0o664);
  await fs.writeFile(path.join(roleDir(dir, "subscriber"), "broken.key"), "metadata\n\tname = oops\n");
  await fs.unlink(path.join(roleDir(dir, "subscriber"), "removed.key"));
  await revoke(dir, "subscriber", "revoked");
  await authorize(dir, "subscriber", added!);
  const loaded = await reloads.waitFor(
    () => access.lookup("feed", added!.curvePublic) !== undefined,
    "the reload with the added key",
  );
  t.true(loaded.ok);
  t.is(access.lookup("feed", removedKey!.curvePublic), undefined);
  t.is(access.lookup("feed", revokedKey!.curvePublic), undefined);
  t.true(access.isRevoked(revokedKey!.curvePublic));
  t.is(access.lookup("feed", stray!.curvePublic), undefined);
  t.truthy(access.lookup("feed", kept!.curvePublic));
  await removed.waitFor((d) => d === "feed", "onRemoved(feed)");
  t.deepEqual(
    access.skipped.map((s) => path.basename(s.file)),
    ["broken.key", "stray.key"],
  );
  t.true(metrics.get("keys_skipped_total") >= 2);
  t.is(metrics.get("key_reloads_total", { result: "failed" }), 0);
});

test("an entry that turns bad is skipped: its key is cut off, not kept", async (t) => {
  const dir = await keysDir(t);
  const node = await identity("web1");
  const file = await authorize(dir, "subscriber", node);
  const removed = callbackWaiter<ZapDomain>();
  const { access } = await openAccess(t, dir, { onRemoved: removed.callback });
  t.truthy(access.lookup("feed", node.curvePublic));
  await fs.chmod(file, 0o666);
  await removed.waitFor((d) => d === "feed", "onRemoved(feed)");
  t.is(access.lookup("feed", node.curvePublic), undefined);
});

test("revoked/ fails closed: a bad file keeps what it revoked, a directory others may write keeps every revocation", async (t) => {
  const dir = await keysDir(t);
  const [first, second, third] = await Promise.all(["first", "second", "third"].map((n) => identity(n)));
  for (const node of [first!, second!, third!]) await authorize(dir, "subscriber", node);
  await revoke(dir, "subscriber", "first");
  await revoke(dir, "subscriber", "second");
  // Authorized again under another name: only revoked/ keeps them out.
  await authorize(dir, "subscriber", first!, "first-again");
  await authorize(dir, "subscriber", second!, "second-again");
  const { access, reloads } = await openAccess(t, dir);
  t.true(access.isRevoked(first!.curvePublic));
  t.true(access.isRevoked(second!.curvePublic));

  // Unparseable now: the revocation it held stays.
  await fs.writeFile(path.join(revokedDir(dir), "first.key"), "garbage\n");
  // Others may write it now: still read for what it revokes.
  await fs.chmod(path.join(revokedDir(dir), "second.key"), 0o666);
  await revoke(dir, "subscriber", "third");
  await reloads.waitFor(() => access.isRevoked(third!.curvePublic), "third's revocation");
  t.true(access.isRevoked(first!.curvePublic));
  t.is(access.lookup("feed", first!.curvePublic), undefined);
  t.true(access.isRevoked(second!.curvePublic));
  t.is(access.lookup("feed", second!.curvePublic), undefined);
  t.deepEqual(
    access.skipped.map((s) => path.basename(s.file)),
    ["first.key", "second.key"],
  );

  // Others may write revoked/: a deletion there cannot be trusted, every revocation stays.
  await fs.chmod(revokedDir(dir), 0o777);
  t.teardown(() => fs.chmod(revokedDir(dir), 0o755));
  await fs.unlink(path.join(revokedDir(dir), "third.key"));
  await reloads.waitFor(
    (r) => r.ok && r.skipped.some((s) => s.file === revokedDir(dir)),
    "the reload that skips revoked/",
  );
  t.true(access.isRevoked(third!.curvePublic));
  t.true(access.isRevoked(first!.curvePublic));

  // Trusted again: the operator's deletion lifts the revocation.
  await fs.chmod(revokedDir(dir), 0o755);
  await authorize(dir, "subscriber", third!, "third-again");
  await reloads.waitFor(
    () => access.lookup("feed", third!.curvePublic) !== undefined,
    "third to be admitted again",
  );
  t.false(access.isRevoked(third!.curvePublic));
});

test("an error reading pending/ never stops a load", async (t) => {
  const dir = await keysDir(t);
  const node = await identity("web1");
  await authorize(dir, "subscriber", node);
  const metrics = new Metrics("publisher");
  const { access, reloads } = await openAccess(t, dir, { metrics });
  // Root reads any directory: a file where pending/ should be fails the listing for root too.
  await fs.rm(pendingDir(dir), { recursive: true });
  await fs.writeFile(pendingDir(dir), "not a directory\n");
  await revoke(dir, "subscriber", "web1");
  await reloads.waitFor(() => access.isRevoked(node.curvePublic), "the revocation");
  t.is(access.lookup("feed", node.curvePublic), undefined);
  await waitFor(() => (metrics.get("pending_keys_total", { result: "unreadable" }) > 0 ? true : undefined), {
    timeoutMs: 8_000,
    what: "the pending/ error to be counted",
  });
});

test("an unknown key is recorded under pending/ in the format `keys pending` and `keys accept` read", async (t) => {
  const dir = await keysDir(t);
  const stranger = await identity("web9");
  const { access, reloads } = await openAccess(t, dir);
  access.recordUnknown("feed", "192.0.2.9", stranger.curvePublic);
  await access.flushPending();

  const id = pendingId(stranger.curvePublic);
  const text = await fs.readFile(path.join(pendingDir(dir), `${id}.key`), "utf8");
  const entries = parseZpl(text);
  t.is(entries.get("metadata/name"), id);
  t.is(entries.get("metadata/role"), "subscriber");
  t.is(entries.get("metadata/address"), "192.0.2.9");
  t.is(entries.get("metadata/attempts"), "1");
  t.false(Number.isNaN(Date.parse(entries.get("metadata/first-seen") ?? "")));
  t.is(entries.get("curve/public-key"), z85Encode(stranger.curvePublic));

  const listed = await keysCli(dir, "pending");
  t.is(listed.length, 1);
  t.regex(listed[0]!, new RegExp(`^${id}  wants subscriber\\s+from 192\\.0\\.2\\.9  first seen `));

  const accepted = await keysCli(dir, "accept", id);
  t.regex(accepted[0]!, new RegExp(`^authorized subscriber ${id}: `));
  await reloads.waitFor(() => access.lookup("feed", stranger.curvePublic) !== undefined, "the accepted key");
  t.deepEqual(await fs.readdir(pendingDir(dir)), []);
});

test("a key known in one role and seen in the other carries its verify key, so a monitor can be accepted", async (t) => {
  const dir = await keysDir(t);
  const node = await identity("web1");
  await authorize(dir, "subscriber", node);
  const { access, reloads } = await openAccess(t, dir);
  access.recordUnknown("submit", "192.0.2.1", node.curvePublic);
  await access.flushPending();
  const id = pendingId(node.curvePublic);
  const entries = parseZpl(await fs.readFile(path.join(pendingDir(dir), `${id}.key`), "utf8"));
  t.is(entries.get("metadata/role"), "monitor");
  t.is(entries.get("metadata/known-as"), "web1");
  t.is(entries.get("sign/verify-key"), z85Encode(node.signPublic));

  await keysCli(dir, "accept", id);
  await reloads.waitFor(
    () => access.lookup("submit", node.curvePublic) !== undefined,
    "the accepted monitor",
  );
  t.is(access.lookup("submit", node.curvePublic)?.nodeId, node.nodeId);
});

test("a full pending/ drops its least recently seen key for a new one; files already there count", async (t) => {
  const dir = await keysDir(t);
  const [earlier, first, second] = await Promise.all(["a", "b", "c"].map((n) => identity(n)));
  const earlierFile = path.join(pendingDir(dir), `${pendingId(earlier!.curvePublic)}.key`);
  await fs.writeFile(earlierFile, "left by an earlier run\n");
  await fs.utimes(earlierFile, new Date("2025-01-01T00:00:00Z"), new Date("2025-01-01T00:00:00Z"));
  const metrics = new Metrics("publisher");
  const { access } = await openAccess(t, dir, { metrics, maxPending: 2, pollMs: 0 });
  access.recordUnknown("feed", "192.0.2.1", first!.curvePublic);
  await access.flushPending();
  access.recordUnknown("feed", "192.0.2.2", second!.curvePublic);
  access.recordUnknown("feed", "192.0.2.1", first!.curvePublic); // known record: no room needed
  await access.flushPending();
  t.deepEqual(
    (await fs.readdir(pendingDir(dir))).sort(),
    [`${pendingId(first!.curvePublic)}.key`, `${pendingId(second!.curvePublic)}.key`].sort(),
  );
  t.is(metrics.get("pending_keys_total", { result: "evicted" }), 1);
  t.is(metrics.get("pending_keys_total", { result: "dropped" }), 0);
  t.is(metrics.get("pending_keys_total", { result: "written" }), 2);
});

test("after 100 scanner keys a genuine new node's key still lands in pending/", async (t) => {
  const dir = await keysDir(t);
  const metrics = new Metrics("publisher");
  const { access } = await openAccess(t, dir, { metrics, pollMs: 0 });
  // Issue 10: unknown keys filled the 100 slots and every later key was dropped.
  for (let i = 0; i < 100; i++) access.recordUnknown("feed", `198.51.100.${i}`, randomBytes(32));
  await access.flushPending();
  // One address cycling keys holds only a few slots.
  for (let i = 0; i < 20; i++) access.recordUnknown("feed", "203.0.113.66", randomBytes(32));
  await access.flushPending();
  t.is((await fs.readdir(pendingDir(dir))).length, 100);

  const dropped = metrics.get("pending_keys_total", { result: "dropped" });
  const genuine = await identity("web7");
  access.recordUnknown("feed", "192.0.2.7", genuine.curvePublic);
  await access.flushPending();
  const files = await fs.readdir(pendingDir(dir));
  t.true(files.includes(`${pendingId(genuine.curvePublic)}.key`));
  t.is(files.length, 100);
  const fromScanner = await Promise.all(
    files.map(async (f) => parseZpl(await fs.readFile(path.join(pendingDir(dir), f), "utf8"))),
  );
  t.is(fromScanner.filter((e) => e.get("metadata/address") === "203.0.113.66").length, 4);
  t.is(metrics.get("pending_keys_total", { result: "dropped" }), dropped);
});

test("at most one pending write per key per interval; attempts and first-seen survive a restart", async (t) => {
  const dir = await keysDir(t);
  const stranger = await identity("web9");
  let now = Date.parse("2025-01-01T00:00:00Z");
  const metrics = new Metrics("publisher");
  const file = path.join(pendingDir(dir), `${pendingId(stranger.curvePublic)}.key`);
  const read = async () => parseZpl(await fs.readFile(file, "utf8"));

  const first = await AccessControl.open(dir, {
    logger: silentLogger(),
    pollMs: 0,
    metrics,
    now: () => now,
  });
  first.recordUnknown("submit", "192.0.2.1", stranger.curvePublic);
  first.recordUnknown("submit", "192.0.2.1", stranger.curvePublic);
  await first.flushPending();
  // One write; it carries every attempt counted before it ran.
  t.is(metrics.get("pending_keys_total", { result: "written" }), 1);
  t.is((await read()).get("metadata/attempts"), "2");
  now += 6_000;
  first.recordUnknown("submit", "192.0.2.3", stranger.curvePublic);
  await first.flushPending();
  t.is(metrics.get("pending_keys_total", { result: "written" }), 2);
  t.is((await read()).get("metadata/attempts"), "3");
  t.is((await read()).get("metadata/address"), "192.0.2.3");
  await first.close();
  await first.close(); // idempotent

  now += 60_000;
  const second = await AccessControl.open(dir, { logger: silentLogger(), pollMs: 0, now: () => now });
  t.teardown(() => second.close());
  second.recordUnknown("submit", "192.0.2.3", stranger.curvePublic);
  await second.flushPending();
  const merged = await read();
  t.is(merged.get("metadata/attempts"), "4");
  t.is(merged.get("metadata/first-seen"), "2025-01-01T00:00:00.000Z");
  t.is(merged.get("metadata/last-seen"), new Date(now).toISOString());
});

test("an address that is not an address is neutralised before it is written", async (t) => {
  const dir = await keysDir(t);
  const stranger = await identity("x");
  const { access } = await openAccess(t, dir, { pollMs: 0 });
  access.recordUnknown("feed", 'evil"\n    secret-key = "x', stranger.curvePublic);
  await access.flushPending();
  const entries = parseZpl(
    await fs.readFile(path.join(pendingDir(dir), `${pendingId(stranger.curvePublic)}.key`), "utf8"),
  );
  t.is(entries.get("metadata/address"), "evil??????secret-key????x");
  t.false(entries.has("curve/secret-key"));
});
