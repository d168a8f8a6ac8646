import { writeFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import type { ProcessName } from "../../src/metrics/catalogue.js";
import { renderFamilies } from "../../src/metrics/exposition.js";
import { Metrics } from "../../src/metrics/registry.js";
import { encodeEventFrames } from "../../src/protocol/frames.js";
import { decodeSubmitReply } from "../../src/protocol/submit.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import { spawnDaemon } from "../helpers/cli.js";
import { testCluster } from "../helpers/cluster.js";
import { tempDir } from "../helpers/temp-dir.js";
import { rawRequest } from "../helpers/unix-socket.js";
import { sign } from "../publisher/helpers.js";
import { banHelperConfig, cliPublisher, metricsPort, request, sample } from "./helpers.js";

/**
 * Every series the catalogue gives `process`, as a scrape of a fresh daemon must show it: counters
 * and histograms at 0 (an alert on `increase()` sees the first event), gauges present.
 */
function expectCatalogue(t: ExecutionContext, page: string, process: ProcessName): void {
  const gauges = new Set(
    new Metrics(process)
      .collect()
      .filter((f) => f.spec.type === "gauge")
      .map((f) => `f2bz_${f.name}`),
  );
  const expected = renderFamilies(new Metrics(process).collect(), { process })
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("# HELP"));
  t.true(expected.length > 10, "the catalogue has series for the process");
  const lines = new Set(page.split("\n"));
  for (const line of expected) {
    if (line.startsWith("# TYPE")) {
      t.true(lines.has(line), line);
      continue;
    }
    const series = line.slice(0, line.lastIndexOf(" "));
    const value = sample(page, series);
    if (gauges.has(series.replace(/\{.*$/, ""))) t.not(value, undefined, series);
    else t.is(value, 0, series);
  }
  t.regex(
    page,
    new RegExp(`^f2bz_build_info\\{process="${process}",version="\\d+\\.\\d+\\.\\d+[^"]*"\\} 1$`, "m"),
  );
}

test("a publisher shows every metric of its catalogue from the start, reasons as labels; a bad signature counts under its reason", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const pub = await cluster.node("pub");
  const web1 = await cluster.node("web1");
  await cluster.authorize(web1, "monitor");
  const { daemon, port } = await cliPublisher(t, cluster, pub);
  const fresh = (await request(port)).body;
  expectCatalogue(t, fresh, "publisher");
  t.true(fresh.includes("# TYPE f2bz_events_dropped_total counter\n"));

  // An authorized monitor whose event's signature does not match its bytes.
  const submit = /"submit":"(tcp:\/\/[^"]+)"/.exec(daemon.stdout())?.[1];
  t.truthy(submit);
  const socket = createClientSocket("request", {
    identity: web1.identity,
    serverKey: pub.identity.curvePublic,
  });
  t.teardown(() => socket.close());
  socket.receiveTimeout = 15_000;
  socket.connect(submit!);
  const event = await sign(web1.identity, { seq: 1, ip: "192.0.2.7" });
  const forged = Buffer.from(event.signature);
  forged[0] = (forged[0] ?? 0) ^ 1;
  await socket.send(encodeEventFrames(event.payload, forged));
  t.deepEqual(decodeSubmitReply(await socket.receive()), {
    ok: true,
    message: { type: "nack", id: event.event.id, reason: "signature" },
  });

  const page = (await request(port)).body;
  t.is(sample(page, 'f2bz_events_dropped_total{process="publisher",reason="signature"}'), 1);
  t.is(sample(page, 'f2bz_events_dropped_total{process="publisher",reason="unauthorized"}'), 0);
  t.is(sample(page, 'f2bz_submissions_total{process="publisher"}'), 1);
  t.is(await daemon.stop(), 0);
});

test("a monitor shows every metric of its catalogue from the start, histograms with their buckets", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const node = await cluster.node("web1");
  const pub = await cluster.node("pub");
  const log = path.join(cluster.dir, "fail2ban.log");
  await writeFile(log, "");
  const config = await cluster.configFile(node, {
    monitor: { log, publishers: [{ submit: "tcp://127.0.0.1:9", key: pub.publicKey }] },
    metrics: { listen: "127.0.0.1:0" },
    logging: { level: "info" },
  });
  const daemon = spawnDaemon(t, ["monitor", "--config", config]);
  await daemon.started("monitor");
  const page = (await request(metricsPort(daemon.stdout()))).body;
  expectCatalogue(t, page, "monitor");
  t.true(page.includes("# TYPE f2bz_publish_latency_seconds histogram\n"));
  t.is(sample(page, 'f2bz_publish_latency_seconds_bucket{process="monitor",le="+Inf"}'), 0);
  t.is(sample(page, 'f2bz_outbox_events{process="monitor"}'), 0);
  t.is(await daemon.stop(), 0);
});

test("a ban-helper shows every metric of its catalogue from the start; a refusal counts under its reason", async (t) => {
  t.timeout(60_000);
  const dir = await tempDir(t);
  const config = await banHelperConfig(dir, '{ banHelper: "127.0.0.1:0" }');
  const daemon = spawnDaemon(t, ["ban-helper", "--config", config]);
  await daemon.started("ban-helper");
  const port = metricsPort(daemon.stdout());
  expectCatalogue(t, (await request(port)).body, "ban-helper");
  t.is(
    await rawRequest(path.join(dir, "ban.sock"), "BAN f2bz 127.0.0.1\n"),
    "ERR never-ban address '127.0.0.1'\n",
  );
  const page = (await request(port)).body;
  t.is(sample(page, 'f2bz_helper_requests_refused_total{process="ban-helper",reason="never-ban"}'), 1);
  t.is(sample(page, 'f2bz_helper_requests_refused_total{process="ban-helper",reason="jail-not-allowed"}'), 0);
  t.is(await daemon.stop(), 0);
});

test("a subscriber shows every metric of its catalogue from the start, with how long its publishers have been silent", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const node = await cluster.node("web2");
  const pub = await cluster.node("pub");
  const config = await cluster.configFile(node, {
    subscriber: {
      publishers: [{ feed: "tcp://127.0.0.1:9", snapshot: "tcp://127.0.0.1:10", key: pub.publicKey }],
      action: { type: "log" },
    },
    metrics: { listen: "127.0.0.1:0" },
    logging: { level: "info" },
  });
  const daemon = spawnDaemon(t, ["subscriber", "--config", config]);
  await daemon.started("subscriber");
  const page = (await request(metricsPort(daemon.stdout()))).body;
  expectCatalogue(t, page, "subscriber");
  t.is(sample(page, 'f2bz_events_dropped_total{process="subscriber",reason="unban-not-held"}'), 0);
  t.is(sample(page, 'f2bz_bans_active{process="subscriber"}'), 0);
  t.true((sample(page, 'f2bz_heartbeat_age_seconds{process="subscriber"}') ?? -1) >= 0);
  t.true(page.includes("# TYPE f2bz_apply_latency_seconds histogram\n"));
  t.is(await daemon.stop(), 0);
});
