import { promises as fs } from "node:fs";
import path from "node:path";
import test from "ava";
import { roleDir } from "../../src/keys/store.js";
import { waitFor } from "../harness/wait.js";
import { testCluster } from "../helpers/cluster.js";
import { publisherPorts } from "../helpers/publisher.js";
import { tempDir } from "../helpers/temp-dir.js";
import {
  captureLogger,
  DEADLINE_MS,
  type LogLine,
  sign,
  startTestPublisher,
  startTestSubscriber,
  submit,
  waitCounter,
  waitLine,
} from "./helpers.js";

/** The `log` action's line for (kind, ip): what an operator of a log-only subscriber reads. */
const applied = (lines: readonly LogLine[], kind: string, ip: string) =>
  lines.filter((l) => l.msg === "cluster event" && l.kind === kind && l.ip === ip);

test("the same event through two publishers is applied once", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const [web1, sub] = await Promise.all([cluster.node("web1"), cluster.node("sub")]);
  await cluster.authorize(web1, "monitor");
  await cluster.authorize(sub, "subscriber");
  const [pub1, pub2] = await Promise.all([
    startTestPublisher(t, cluster, { name: "pub1" }),
    startTestPublisher(t, cluster, { name: "pub2" }),
  ]);
  const { logger, lines } = captureLogger();
  const running = await startTestSubscriber(
    t,
    cluster,
    sub,
    { publishers: [pub1.entry, pub2.entry], action: { type: "log" } },
    { logger },
  );
  await waitCounter(
    { get: () => running.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
    2,
  );

  const ban = await sign(web1.identity, { seq: 1, ip: "203.0.113.7" });
  t.deepEqual(
    [...(await submit(pub1, web1, [ban])), ...(await submit(pub2, web1, [ban]))].map((r) => r.type),
    ["ack", "ack"],
  );
  await waitCounter(
    { get: () => running.metrics.get("events_dropped_total", { reason: "duplicate" }) },
    "dropped.duplicate",
  );
  t.is(applied(lines, "ban", "203.0.113.7").length, 1);
  t.is(
    running.metrics.get("events_accepted_total", { source: "live" }) +
      running.metrics.get("events_accepted_total", { source: "snapshot" }),
    1,
  );
  t.deepEqual(
    running.store.applied().map((b) => [b.jail, b.ip, b.id]),
    [["f2bz", "203.0.113.7", ban.event.id]],
  );
});

test("a subscriber started later gets every active ban from a snapshot of several chunks", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const [web1, sub] = await Promise.all([cluster.node("web1"), cluster.node("sub")]);
  await cluster.authorize(web1, "monitor");
  await cluster.authorize(sub, "subscriber");
  const pub = await startTestPublisher(t, cluster, {
    publisher: { perOriginRate: 10_000, perOriginBurst: 10_000, globalRate: 10_000 },
  });
  // 450 bans: three chunks of at most 200 entries, each larger than a default 64 KiB frame.
  const bans = [];
  for (let n = 1; n <= 450; n++)
    bans.push(await sign(web1.identity, { seq: n, ip: `2001:db8::${n.toString(16)}` }));
  const replies = await submit(pub, web1, bans);
  t.true(replies.every((r) => r.type === "ack"));
  const unban = await sign(web1.identity, { seq: 451, ip: "2001:db8::1", kind: "unban" });
  t.is((await submit(pub, web1, [unban]))[0]?.type, "ack");

  const { logger, lines } = captureLogger();
  const running = await startTestSubscriber(
    t,
    cluster,
    sub,
    { publishers: [pub.entry], action: { type: "log" } },
    { logger },
  );
  await waitCounter(
    { get: () => running.metrics.get("events_accepted_total", { source: "snapshot" }) },
    "accepted.snapshot",
    449,
    40_000,
  );
  t.is(running.store.applied().length, 449);
  t.is(applied(lines, "ban", "2001:db8::1").length, 0, "lifted before we joined: not in the snapshot");
  t.is(applied(lines, "ban", "2001:db8::1c2").length, 1);
});

test("a publisher that refuses our key is named in the log, and we get in once the key is added", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const [web1, sub] = await Promise.all([cluster.node("web1"), cluster.node("sub")]);
  await cluster.authorize(web1, "monitor");
  const pub = await startTestPublisher(t, cluster);
  const { logger, lines } = captureLogger();
  const running = await startTestSubscriber(
    t,
    cluster,
    sub,
    { publishers: [pub.entry], action: { type: "log" } },
    { logger },
  );
  const refused = await waitLine(lines, (l) => /publisher refused our key/.test(l.msg), "key refused");
  t.is(refused.publisher, pub.entry.feed);
  t.regex(refused.msg, /authorized\/subscribers/);

  // Signing up, as an operator does: copy the public key into the directory; no restart anywhere.
  await fs.copyFile(sub.publicKey, path.join(roleDir(cluster.keysDir, "subscriber"), "sub.key"));
  await waitCounter(
    { get: () => running.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
    1,
    30_000,
  );
  await submit(pub, web1, [await sign(web1.identity, { seq: 1, ip: "198.51.100.20" })]);
  await waitLine(lines, (l) => applied([l], "ban", "198.51.100.20").length === 1, "the ban");
  t.deepEqual(
    running.store.applied().map((b) => b.ip),
    ["198.51.100.20"],
  );
});

test("a publisher whose key does not match the pinned one is named in the log", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const [sub, impostor] = await Promise.all([cluster.node("sub"), cluster.node("impostor")]);
  await cluster.authorize(sub, "subscriber");
  const pub = await startTestPublisher(t, cluster);
  const { logger, lines } = captureLogger();
  await startTestSubscriber(
    t,
    cluster,
    sub,
    // The right endpoints, the wrong key: a mistyped file name, or a replaced publisher.
    { publishers: [{ ...pub.entry, key: impostor.publicKey }], action: { type: "log" } },
    { logger },
  );
  const line = await waitLine(lines, (l) => /publisher key does not match/.test(l.msg), "key mismatch");
  t.is(line.publisher, pub.entry.feed);
  t.regex(String(line.pinned), /^SHA256:/);
});

test("a publisher that is not there is named in the log", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const [pubNode, sub] = await Promise.all([cluster.node("pub"), cluster.node("sub")]);
  const { logger, lines } = captureLogger();
  // Where this publisher listened a moment ago: nothing listens there now.
  const endpoint = (await publisherPorts(t, cluster, pubNode)).feed;
  await startTestSubscriber(
    t,
    cluster,
    sub,
    { publishers: [{ feed: endpoint, snapshot: endpoint, key: pubNode.publicKey }], action: { type: "log" } },
    { logger },
  );
  const line = await waitLine(lines, (l) => /cannot connect to the publisher/.test(l.msg), "unreachable");
  t.is(line.publisher, endpoint);
});

test("dryRun logs the command it would run and never touches fail2ban", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const [web1, sub] = await Promise.all([cluster.node("web1"), cluster.node("sub")]);
  await cluster.authorize(web1, "monitor");
  await cluster.authorize(sub, "subscriber");
  const pub = await startTestPublisher(t, cluster);
  // A fail2ban-client that records every call: a dry run must not make a single one, not even status.
  const dir = await tempDir(t, "f2bz-dry-");
  const calls = path.join(dir, "calls");
  const client = path.join(dir, "fail2ban-client");
  await fs.writeFile(client, `#!/bin/sh\necho "$@" >> ${calls}\necho 1\n`, { mode: 0o755 });
  const { logger, lines } = captureLogger();
  const running = await startTestSubscriber(
    t,
    cluster,
    sub,
    { publishers: [pub.entry], action: { type: "fail2ban", jail: "same", client, dryRun: true } },
    { logger },
  );
  await waitCounter(
    { get: () => running.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
  );
  const ban = await sign(web1.identity, { seq: 1, ip: "192.0.2.33", jail: "sshd", time: Date.now() });
  const unban = await sign(web1.identity, { seq: 2, ip: "192.0.2.33", jail: "sshd", kind: "unban" });
  await submit(pub, web1, [ban]);
  const would = await waitLine(
    lines,
    (l) => l.msg === "dry-run: would fail2ban" && l.kind === "ban",
    "dry-run ban",
  );
  t.deepEqual(would.would, [client, "set", "sshd", "banip", "192.0.2.33"]);
  await submit(pub, web1, [unban]);
  const wouldUnban = await waitLine(
    lines,
    (l) => l.msg === "dry-run: would fail2ban" && l.kind === "unban",
    "dry-run unban",
  );
  t.deepEqual(wouldUnban.would, [client, "set", "sshd", "unbanip", "192.0.2.33"]);
  await running.close();
  await t.throwsAsync(fs.readFile(calls), { code: "ENOENT" }, "fail2ban-client never ran");
});

test("an unban of a ban this subscriber does not hold is ignored and leaves no ledger entry", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const [web1, sub] = await Promise.all([cluster.node("web1"), cluster.node("sub")]);
  await cluster.authorize(web1, "monitor");
  await cluster.authorize(sub, "subscriber");
  const pub = await startTestPublisher(t, cluster);
  const { logger } = captureLogger();
  // This subscriber keeps cluster bans at most 1 s: it has lifted the ban long before the origin's
  // unban comes, while the publisher still holds it and so passes the unban on.
  const running = await startTestSubscriber(
    t,
    cluster,
    sub,
    // exec (a command that may reach fail2ban) keeps the echo ledger; the log action has none.
    { publishers: [pub.entry], action: { type: "exec", command: ["/bin/true", "{kind}", "{ip}"] } },
    { logger, events: { maxBanTime: "1s" } },
  );
  await waitCounter(
    { get: () => running.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
  );
  await submit(pub, web1, [await sign(web1.identity, { seq: 1, ip: "192.0.2.44" })]);
  await waitCounter({ get: () => running.metrics.get("bans_expired_total") }, "bans.expired");
  const ledger = () => running.store.db.prepare("SELECT * FROM ledger ORDER BY kind").all();
  const before = ledger();
  t.is(before.length, 2, "the ban and the expiry's own unban");

  await submit(pub, web1, [await sign(web1.identity, { seq: 2, ip: "192.0.2.44", kind: "unban" })]);
  await waitCounter(
    { get: () => running.metrics.get("events_dropped_total", { reason: "unban-not-held" }) },
    "dropped.unban-not-held",
  );
  await waitCounter(
    { get: () => running.metrics.get("bans_applied_total", { kind: "unban" }) },
    "applied.unban",
  );
  t.is(
    running.metrics.get("bans_applied_total", { kind: "unban" }),
    1,
    "only the expiry's unban was applied",
  );
  t.deepEqual(ledger(), before);
});

test("a ban is lifted when its expiry passes, also when that happens while the subscriber is down", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const [web1, sub] = await Promise.all([cluster.node("web1"), cluster.node("sub")]);
  await cluster.authorize(web1, "monitor");
  await cluster.authorize(sub, "subscriber");
  const pub = await startTestPublisher(t, cluster);
  const first = captureLogger();
  const sections = { publishers: [pub.entry], action: { type: "log" } };
  const running = await startTestSubscriber(t, cluster, sub, sections, { logger: first.logger });
  await waitCounter(
    { get: () => running.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
  );
  const now = Date.now();
  const short = await sign(web1.identity, { seq: 1, ip: "192.0.2.51", time: now, expires: now + 2_000 });
  const long = await sign(web1.identity, { seq: 2, ip: "192.0.2.52", time: now, expires: now + 600_000 });
  await submit(pub, web1, [short, long]);
  await waitFor(() => (running.store.applied().length === 2 ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "both bans held",
  });
  await running.close();

  // Down while the short ban expires; the restarted subscriber lifts it first thing.
  await waitFor(() => (Date.now() > short.event.expires ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "the expiry to pass",
  });
  const second = captureLogger();
  const again = await startTestSubscriber(t, cluster, sub, sections, { logger: second.logger });
  await waitLine(second.lines, (l) => applied([l], "unban", "192.0.2.51").length === 1, "expiry unban");
  t.deepEqual(
    again.store.applied().map((b) => b.ip),
    ["192.0.2.52"],
  );
  t.is(applied(second.lines, "unban", "192.0.2.52").length, 0);
  t.is(again.metrics.get("bans_expired_total"), 1);
});

test("configured peers, wide ranges included, are never banned", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const [web1, sub] = await Promise.all([cluster.node("web1"), cluster.node("sub")]);
  await cluster.authorize(web1, "monitor");
  await cluster.authorize(sub, "subscriber");
  const pub = await startTestPublisher(t, cluster);
  const { logger, lines } = captureLogger();
  const running = await startTestSubscriber(
    t,
    cluster,
    sub,
    {
      publishers: [pub.entry],
      action: { type: "log" },
      peers: ["192.0.2.200", "10.0.0.0/8", "2001:db8:aa::/48"],
    },
    { logger },
  );
  await waitCounter(
    { get: () => running.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
  );
  const targets = ["192.0.2.200", "10.20.30.40", "2001:db8:aa::9", "192.0.2.201"];
  await submit(pub, web1, await Promise.all(targets.map((ip, i) => sign(web1.identity, { seq: i + 1, ip }))));
  await waitLine(lines, (l) => applied([l], "ban", "192.0.2.201").length === 1, "the one ban allowed");
  await waitCounter(
    { get: () => running.metrics.get("events_dropped_total", { reason: "never-ban" }) },
    "dropped.never-ban",
    3,
  );
  t.deepEqual(
    running.store.applied().map((b) => b.ip),
    ["192.0.2.201"],
  );
});

test("a malformed peer is a configuration error, not a silent gap in the never-ban list", async (t) => {
  const cluster = await testCluster(t);
  const [pubNode, sub] = await Promise.all([cluster.node("pub"), cluster.node("sub")]);
  const { feed, snapshot } = await publisherPorts(t, cluster, pubNode);
  const error = await t.throwsAsync(
    startTestSubscriber(t, cluster, sub, {
      publishers: [{ feed, snapshot, key: pubNode.publicKey }],
      action: { type: "log" },
      peers: ["192.0.2.0/33"],
    }),
  );
  t.regex(
    error?.message ?? "",
    /line \d+: 'subscriber\.peers\[0\]': expected an address, a range or a host name, found '192\.0\.2\.0\/33'$/,
  );
});

test("a fail2ban action refuses to start while fail2ban does not answer (its ignoreip is unknown)", async (t) => {
  t.timeout(40_000);
  const cluster = await testCluster(t);
  const [pubNode, sub] = await Promise.all([cluster.node("pub"), cluster.node("sub")]);
  const dir = await tempDir(t, "f2bz-down-");
  const client = path.join(dir, "fail2ban-client");
  await fs.writeFile(
    client,
    "#!/bin/sh\necho 'ERROR   Failed to access socket path: /run/fail2ban/fail2ban.sock. Is fail2ban running?' >&2\nexit 255\n",
    { mode: 0o755 },
  );
  const { feed, snapshot } = await publisherPorts(t, cluster, pubNode);
  const error = await t.throwsAsync(
    startTestSubscriber(t, cluster, sub, {
      publishers: [{ feed, snapshot, key: pubNode.publicKey }],
      action: { type: "fail2ban", jail: "f2bz", client },
    }),
  );
  t.regex(error?.message ?? "", /fail2ban-client status exited with 255: .*Is fail2ban running\?/);
});
