import test from "ava";
import { CATALOGUE, type MetricName, type ProcessName } from "../../src/metrics/catalogue.js";
import { renderFamilies } from "../../src/metrics/exposition.js";
import { Metrics } from "../../src/metrics/registry.js";
import { REJECT_REASONS } from "../../src/protocol/reasons.js";

const PROCESSES: readonly ProcessName[] = ["publisher", "monitor", "subscriber", "ban-helper"];

test("catalogue names follow Prometheus conventions: snake_case, _total for counters only, base units", (t) => {
  for (const [name, spec] of Object.entries(CATALOGUE)) {
    t.regex(name, /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/, name);
    t.is(name.endsWith("_total"), spec.type === "counter", name);
    t.false(/_(ms|milliseconds|minutes|bytes_total)$/.test(name), name);
    if (spec.type === "histogram") t.true(name.endsWith("_seconds"), name);
    t.true(spec.help.length > 0 && !spec.help.includes("\n"), name);
    for (const [label, values] of Object.entries("labels" in spec ? spec.labels : {})) {
      t.regex(label, /^[a-z_]+$/, `${name}{${label}}`);
      t.is(new Set(values).size, values.length, `${name}{${label}} values are distinct`);
    }
  }
});

test("every series of a process's metrics exists from the start, at 0; other processes' metrics are absent", (t) => {
  const metrics = new Metrics("publisher");
  const families = metrics.collect();
  const names = families.map((f) => f.name);
  t.true(names.includes("events_dropped_total"));
  t.false(names.includes("outbox_events"), "a monitor metric");
  const dropped = families.find((f) => f.name === "events_dropped_total")!;
  t.deepEqual(
    dropped.series.map((s) => s.labels.reason),
    [...REJECT_REASONS, "duplicate", "expired", "superseded", "unban-not-held"],
  );
  t.true(dropped.series.every((s) => s.value === 0));
  for (const process of PROCESSES) {
    const own = Object.entries(CATALOGUE).filter(
      ([name, spec]) => name !== "build_info" && (spec.processes as readonly string[]).includes(process),
    );
    t.deepEqual(
      new Metrics(process).collect().map((f) => f.name),
      own.map(([name]) => name as MetricName),
      process,
    );
  }
});

test("a counter counts per label value; a gauge is set; a histogram fills its cumulative buckets", (t) => {
  const metrics = new Metrics("subscriber");
  metrics.inc("events_dropped_total", { reason: "signature" });
  metrics.inc("events_dropped_total", { reason: "signature" }, 2);
  metrics.inc("feed_gaps_total");
  metrics.set("bans_active", 7);
  metrics.observe("apply_latency_seconds", 0.02);
  metrics.observe("apply_latency_seconds", 3);
  t.is(metrics.get("events_dropped_total", { reason: "signature" }), 3);
  t.is(metrics.get("events_dropped_total", { reason: "replay" }), 0);
  t.is(metrics.get("feed_gaps_total"), 1);
  t.is(metrics.get("bans_active"), 7);
  t.is(metrics.get("apply_latency_seconds"), 2);

  const page = renderFamilies(metrics.collect(), { process: "subscriber" });
  t.true(page.includes("# TYPE f2bz_events_dropped_total counter\n"));
  t.true(page.includes('f2bz_events_dropped_total{process="subscriber",reason="signature"} 3\n'));
  t.true(page.includes('f2bz_events_dropped_total{process="subscriber",reason="never-ban"} 0\n'));
  t.true(page.includes('f2bz_bans_active{process="subscriber"} 7\n'));
  t.true(page.includes("# TYPE f2bz_apply_latency_seconds histogram\n"));
  t.true(page.includes('f2bz_apply_latency_seconds_bucket{process="subscriber",le="0.01"} 0\n'));
  t.true(page.includes('f2bz_apply_latency_seconds_bucket{process="subscriber",le="0.025"} 1\n'));
  t.true(page.includes('f2bz_apply_latency_seconds_bucket{process="subscriber",le="5"} 2\n'));
  t.true(page.includes('f2bz_apply_latency_seconds_bucket{process="subscriber",le="+Inf"} 2\n'));
  t.true(page.includes('f2bz_apply_latency_seconds_sum{process="subscriber"} 3.02\n'));
  t.true(page.includes('f2bz_apply_latency_seconds_count{process="subscriber"} 2\n'));
});

test("a name or label value outside the process's catalogue throws instead of minting a series", (t) => {
  const metrics = new Metrics("monitor");
  const loose = metrics as unknown as { inc(name: string, labels?: object): void };
  t.throws(() => loose.inc("events_dropped_total", { reason: "signature" }), {
    message: `metric 'events_dropped_total' {"reason":"signature"} is not in the monitor catalogue`,
  });
  t.throws(() => loose.inc("deliveries_total", { result: 'x"} 1\n# evil' }), { instanceOf: TypeError });
  t.throws(() => loose.inc("no_such_total"), { instanceOf: TypeError });
});

test("a gauge refresh that throws is reported and leaves the other metrics served", (t) => {
  const metrics = new Metrics("publisher");
  metrics.onCollect(() => {
    throw new Error("database is locked");
  });
  metrics.inc("bans_expired_total");
  const errors: unknown[] = [];
  const families = metrics.collect((error) => errors.push(error));
  t.is(errors.length, 1);
  t.is(families.find((f) => f.name === "bans_expired_total")?.series[0]?.value, 1);
});
