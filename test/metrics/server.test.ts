import { once } from "node:events";
import net from "node:net";
import test, { type ExecutionContext } from "ava";
import { pino } from "pino";
import { F2bzError } from "../../src/errors.js";
import { Metrics } from "../../src/metrics/registry.js";
import { MetricsServer, type MetricsSource } from "../../src/metrics/server.js";
import { hasIpv6Loopback, testWhen } from "../helpers/skip.js";
import { request, sample } from "./helpers.js";

const logger = pino({ level: "silent" });

async function serve(t: ExecutionContext, source: MetricsSource, host = "127.0.0.1") {
  const server = await MetricsServer.listen({
    address: { host, port: 0 },
    process: "monitor",
    version: "0.0.0-test",
    source,
    logger,
  });
  t.teardown(() => server.close());
  return server;
}

test("GET /metrics serves the counters and gauges of the moment, in text format 0.0.4", async (t) => {
  const metrics = new Metrics("monitor");
  let entries = 3;
  metrics.onCollect(() => metrics.set("outbox_events", entries));
  const server = await serve(t, { metrics });
  const { port } = server.address;
  t.not(port, 0);

  const empty = await request(port);
  t.is(empty.status, 200);
  t.is(empty.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  t.is(empty.headers.connection, "close");
  t.is(sample(empty.body, 'f2bz_outbox_events{process="monitor"}'), 3);
  t.true(empty.body.includes("# TYPE f2bz_outbox_events gauge\n"));
  t.is(sample(empty.body, 'f2bz_events_published_total{process="monitor"}'), 0);
  t.true(empty.body.endsWith("\n"));

  metrics.inc("events_published_total", 2);
  metrics.inc("log_lines_dropped_total", { reason: "invalid-ip" });
  entries = 0;
  const page = (await request(port)).body;
  t.is(sample(page, 'f2bz_events_published_total{process="monitor"}'), 2);
  t.is(sample(page, 'f2bz_log_lines_dropped_total{process="monitor",reason="invalid-ip"}'), 1);
  t.is(sample(page, 'f2bz_outbox_events{process="monitor"}'), 0);
  t.true(page.includes("# TYPE f2bz_events_published_total counter\n"));
  t.is(sample(page, 'f2bz_build_info{process="monitor",version="0.0.0-test"}'), 1);
  t.true((sample(page, 'process_resident_memory_bytes{process="monitor"}') ?? 0) > 1_000_000);
  t.true((sample(page, 'process_cpu_seconds_total{process="monitor"}') ?? 0) > 0);
  const start = sample(page, 'process_start_time_seconds{process="monitor"}') ?? 0;
  t.true(Math.abs(start - (Date.now() / 1000 - process.uptime())) < 2);
  // Every line is a comment or `name{labels} value`: what a Prometheus parser accepts.
  for (const line of page.trimEnd().split("\n")) {
    t.regex(
      line,
      /^(# (HELP|TYPE) [a-z_][a-z0-9_]* .+|[a-z_][a-z0-9_]*\{process="monitor"(,[a-z_]+="[^"\\\n]*")*\} -?[0-9.e+]+)$/,
      line,
    );
  }
});

test("only GET and HEAD of /metrics: other paths 404, other methods 405, a body is never read", async (t) => {
  const server = await serve(t, { metrics: new Metrics("monitor") });
  const { port } = server.address;
  t.is((await request(port, { path: "/" })).status, 404);
  t.is((await request(port, { path: "/metrics/x" })).status, 404);
  t.is((await request(port, { path: "/../metrics" })).status, 404);
  t.is((await request(port, { path: "/metrics?name[]=x" })).status, 200);
  const head = await request(port, { method: "HEAD" });
  t.is(head.status, 200);
  t.is(head.body, "");
  t.true(Number(head.headers["content-length"]) > 0);
  const post = await request(port, { method: "POST", body: "x".repeat(100_000) });
  t.is(post.status, 405);
  t.is(post.headers.allow, "GET, HEAD");
  t.is((await request(port, { method: "DELETE" })).status, 405);
});

test("a gauge that throws costs only the gauges; the counters are still served", async (t) => {
  const metrics = new Metrics("monitor");
  metrics.inc("events_published_total");
  metrics.onCollect(() => {
    throw new Error("database is locked");
  });
  const server = await serve(t, { metrics });
  const page = await request(server.address.port);
  t.is(page.status, 200);
  t.is(sample(page.body, 'f2bz_events_published_total{process="monitor"}'), 1);
});

test("oversized headers are refused, and close() drops idle connections and frees the port", async (t) => {
  const server = await MetricsServer.listen({
    address: { host: "127.0.0.1", port: 0 },
    process: "publisher",
    version: "0.0.0-test",
    source: {},
    logger,
  });
  const { port } = server.address;
  const big = await request(port, { path: `/metrics?${"a".repeat(20_000)}` });
  t.is(big.status, 431);

  // A client that connects and sends nothing must not hold up a shutdown.
  const idle = net.connect(port, "127.0.0.1");
  await once(idle, "connect");
  const idleClosed = once(idle, "close");
  await server.close();
  await idleClosed;
  await server.close();
  await t.throwsAsync(request(port), { code: "ECONNREFUSED" });
});

testWhen(
  test,
  hasIpv6Loopback(),
  "no IPv6 loopback (::1) on this machine: metrics on ::1",
)("IPv6 loopback works", async (t) => {
  const v6 = await serve(t, { metrics: new Metrics("monitor") }, "::1");
  t.is((await request(v6.address.port, { host: "::1" })).status, 200);
});

test("a port in use is a BIND_FAILED error naming the address", async (t) => {
  const first = await serve(t, {});
  const error = await t.throwsAsync(
    MetricsServer.listen({
      address: first.address,
      process: "subscriber",
      version: "0.0.0-test",
      source: {},
      logger,
    }),
    { instanceOf: F2bzError },
  );
  t.is(error?.code, "BIND_FAILED");
  t.is(
    error?.message,
    `cannot serve metrics on '127.0.0.1:${first.address.port}': EADDRINUSE, expected a free loopback port (each f2bz daemon of a host needs its own: metrics.subscriber)`,
  );
});
