import { promises as fs } from "node:fs";
import path from "node:path";
import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { formatPublicCertificate, generateIdentity } from "../../src/keys/identity.js";
import { pendingDir, pendingId, revokedDir, roleDir } from "../../src/keys/store.js";
import { z85Encode } from "../../src/keys/z85.js";
import { parseZpl } from "../../src/keys/zpl.js";
import { Counters } from "../../src/logging.js";
import { AccessControl } from "../../src/transport/access.js";
import type { ZapDomain } from "../../src/transport/sockets.js";
import {
  authorize,
  callbackWaiter,
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
  const { access } = await openAccess(t, dir, { pollMs: 0 });

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
  t.deepEqual(access.counts, { monitors: 1, subscribers: 1, revoked: 2 });
});

test("a broken directory refuses to start", async (t) => {
  const dir = await keysDir(t);
  await fs.writeFile(path.join(roleDir(dir, "subscriber"), "bad.key"), 'curve\n    public-key = "short"\n');
  const error = await t.throwsAsync(AccessControl.open(dir, { logger: silentLogger(), pollMs: 0 }));
  t.true(error instanceof F2bzError && error.code === "KEY_INVALID");
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

test("a broken key file during reload keeps the previous set until the directory is fixed", async (t) => {
  const dir = await keysDir(t);
  const [old, added] = await Promise.all(["old", "added"].map((n) => identity(n)));
  await authorize(dir, "subscriber", old!);
  const counters = new Counters();
  const removed = callbackWaiter<ZapDomain>();
  const { access, reloads } = await openAccess(t, dir, { counters, onRemoved: removed.callback });

  const broken = path.join(roleDir(dir, "subscriber"), "broken.key");
  await fs.writeFile(broken, "metadata\n\tname = oops\n");
  await authorize(dir, "subscriber", added!);
  const failed = await reloads.waitFor((r) => !r.ok, "a failed reload");
  t.regex(failed.ok ? "" : failed.error.message, /broken\.key/);
  t.truthy(access.lookup("feed", old!.curvePublic));
  // All or nothing: the valid file next to the broken one waits too.
  t.is(access.lookup("feed", added!.curvePublic), undefined);
  t.true(counters.get("access.reload_failed") >= 1);

  await fs.unlink(broken);
  await reloads.waitFor(() => access.lookup("feed", added!.curvePublic) !== undefined, "the fixed directory");
  t.truthy(access.lookup("feed", old!.curvePublic));
  t.deepEqual(removed.calls, []);
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

test("pending/ is bounded: files already there count, extra keys are dropped and counted", async (t) => {
  const dir = await keysDir(t);
  const [earlier, first, second] = await Promise.all(["a", "b", "c"].map((n) => identity(n)));
  await fs.writeFile(
    path.join(pendingDir(dir), `${pendingId(earlier!.curvePublic)}.key`),
    "left by an earlier run\n",
  );
  const counters = new Counters();
  const { access } = await openAccess(t, dir, { counters, maxPending: 2, pollMs: 0 });
  access.recordUnknown("feed", "192.0.2.1", first!.curvePublic);
  access.recordUnknown("feed", "192.0.2.2", second!.curvePublic);
  access.recordUnknown("feed", "192.0.2.1", first!.curvePublic); // known record: not dropped
  await access.flushPending();
  t.deepEqual(
    (await fs.readdir(pendingDir(dir))).sort(),
    [`${pendingId(earlier!.curvePublic)}.key`, `${pendingId(first!.curvePublic)}.key`].sort(),
  );
  t.is(counters.get("access.pending_dropped"), 1);
  t.is(counters.get("access.pending_written"), 1);
});

test("at most one pending write per key per interval; attempts and first-seen survive a restart", async (t) => {
  const dir = await keysDir(t);
  const stranger = await identity("web9");
  let now = Date.parse("2025-01-01T00:00:00Z");
  const counters = new Counters();
  const file = path.join(pendingDir(dir), `${pendingId(stranger.curvePublic)}.key`);
  const read = async () => parseZpl(await fs.readFile(file, "utf8"));

  const first = await AccessControl.open(dir, {
    logger: silentLogger(),
    pollMs: 0,
    counters,
    now: () => now,
  });
  first.recordUnknown("submit", "192.0.2.1", stranger.curvePublic);
  first.recordUnknown("submit", "192.0.2.1", stranger.curvePublic);
  await first.flushPending();
  // One write; it carries every attempt counted before it ran.
  t.is(counters.get("access.pending_written"), 1);
  t.is((await read()).get("metadata/attempts"), "2");
  now += 6_000;
  first.recordUnknown("submit", "192.0.2.3", stranger.curvePublic);
  await first.flushPending();
  t.is(counters.get("access.pending_written"), 2);
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
