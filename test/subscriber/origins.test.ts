import { promises as fs } from "node:fs";
import path from "node:path";
import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { formatPublicCertificate, generateIdentity } from "../../src/keys/identity.js";
import { testCluster } from "../helpers/cluster.js";
import {
  captureLogger,
  type LogLine,
  sign,
  startTestMonitor,
  startTestPublisher,
  startTestSubscriber,
  submit,
  waitCounter,
  waitLine,
} from "./helpers.js";

/** The `log` action's line for (kind, ip): what an operator of a log-only subscriber reads. */
const applied = (lines: readonly LogLine[], ip: string) =>
  lines.filter((l) => l.msg === "cluster event" && l.kind === "ban" && l.ip === ip);

test("a key removed from subscriber.origins stops counting without a restart; a bad entry is skipped", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const [web1, web2, sub] = await Promise.all(["web1", "web2", "sub"].map((n) => cluster.node(n)));
  await cluster.authorize(web1!, "monitor");
  await cluster.authorize(web2!, "monitor");
  await cluster.authorize(sub!, "subscriber");
  const origins = path.join(cluster.dir, "origins");
  await fs.mkdir(origins, { mode: 0o755 });
  await fs.copyFile(web1!.publicKey, path.join(origins, "web1.key"));
  await fs.copyFile(web2!.publicKey, path.join(origins, "web2.key"));
  const pub = await startTestPublisher(t, cluster);
  const { logger, lines } = captureLogger();
  const running = await startTestSubscriber(
    t,
    cluster,
    sub!,
    { publishers: [pub.entry], action: { type: "log" }, origins },
    { logger },
  );
  await waitCounter(
    { get: () => running.metrics.get("snapshot_loads_total", { result: "loaded" }) },
    "snapshot.loaded",
  );
  await submit(pub, web1!, [await sign(web1!.identity, { seq: 1, ip: "203.0.113.1" })]);
  await waitLine(lines, (l) => applied([l], "203.0.113.1").length === 1, "web1's first ban applied");

  // Issue 10: the directory was read once, so a removed (compromised) monitor kept banning.
  const stray = path.join(origins, "stray.key");
  await fs.writeFile(stray, formatPublicCertificate(await generateIdentity("stray")));
  await fs.chmod(stray, 0o664);
  await fs.unlink(path.join(origins, "web1.key"));
  await waitLine(lines, (l) => l.msg === "origin keys loaded" && l.removed === 1, "the reload");
  const skipped = await waitLine(lines, (l) => l.msg === "key skipped", "the skipped stray key");
  t.is(skipped.file, stray);
  t.regex(String(skipped.reason), /has mode 0664/);

  await submit(pub, web1!, [await sign(web1!.identity, { seq: 2, ip: "203.0.113.2" })]);
  await submit(pub, web2!, [await sign(web2!.identity, { seq: 1, ip: "203.0.113.3" })]);
  await waitLine(lines, (l) => applied([l], "203.0.113.3").length === 1, "web2's ban applied");
  await waitCounter(
    { get: () => running.metrics.get("events_dropped_total", { reason: "unauthorized" }) },
    "dropped.unauthorized",
  );
  t.is(applied(lines, "203.0.113.2").length, 0);
  t.is(running.metrics.get("keys_skipped_total"), 1);
});

test("a pinned publisher key others may write is refused by the subscriber and the monitor", async (t) => {
  const cluster = await testCluster(t);
  const [web1, sub] = await Promise.all(["web1", "sub"].map((n) => cluster.node(n)));
  const pub = await startTestPublisher(t, cluster);
  // Issue 10: whoever may rewrite the pinned key can put their own publisher in the middle.
  await fs.chmod(pub.node.publicKey, 0o664);
  const expected = `key file '${pub.node.publicKey}' has mode 0664, expected no write permission for group or others`;
  const subscriber = await t.throwsAsync(
    startTestSubscriber(t, cluster, sub!, { publishers: [pub.entry], action: { type: "log" } }),
    { instanceOf: F2bzError },
  );
  t.is(subscriber?.message, expected);
  const log = path.join(cluster.dir, "fail2ban.log");
  await fs.writeFile(log, "");
  const monitor = await t.throwsAsync(
    startTestMonitor(t, cluster, web1!, { log, publishers: [pub.monitorEntry] }),
    { instanceOf: F2bzError },
  );
  t.is(monitor?.message, expected);
});
