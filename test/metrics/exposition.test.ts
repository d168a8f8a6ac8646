import test from "ava";
import { Counters } from "../../src/logging.js";
import { formatValue, MAX_SERIES, metricName, render, samples } from "../../src/metrics/exposition.js";

test("counter names become metric names: f2bz_ prefix, lower case, one _ per run of other characters", (t) => {
  t.is(metricName("submit.received"), "f2bz_submit_received");
  t.is(metricName("dropped.rate-limited"), "f2bz_dropped_rate_limited");
  t.is(metricName("zap.denied.unknown"), "f2bz_zap_denied_unknown");
  t.is(metricName("refused.jail not allowed"), "f2bz_refused_jail_not_allowed");
  t.is(metricName("feed.send-failed"), "f2bz_feed_send_failed");
  t.is(metricName("Weird..Name--"), "f2bz_weird_name");
  t.is(metricName('x"} 1\n# TYPE evil'), "f2bz_x_1_type_evil");
  t.is(metricName("..."), "f2bz_unnamed");
  for (const name of ["a.b", "ü", "1st", "a b\tc", "{}"]) t.regex(metricName(name), /^[a-z_][a-z0-9_]*$/);
});

test("the page: HELP with the original name, TYPE, one labelled sample each, sorted, newline at the end", (t) => {
  const counters = new Counters();
  counters.inc("submit.received", 3);
  counters.inc("dropped.rate-limited");
  const page = render(samples(counters.toJSON(), { "bans.active": 2 }), { process: "publisher" });
  t.is(
    page,
    [
      "# HELP f2bz_bans_active bans.active",
      "# TYPE f2bz_bans_active gauge",
      'f2bz_bans_active{process="publisher"} 2',
      "# HELP f2bz_dropped_rate_limited_total dropped.rate-limited",
      "# TYPE f2bz_dropped_rate_limited_total counter",
      'f2bz_dropped_rate_limited_total{process="publisher"} 1',
      "# HELP f2bz_submit_received_total submit.received",
      "# TYPE f2bz_submit_received_total counter",
      'f2bz_submit_received_total{process="publisher"} 3',
      "",
    ].join("\n"),
  );
  t.is(render([], { process: "monitor" }), "");
});

test("label values and HELP text are escaped; names that sanitize alike add up", (t) => {
  const page = render(samples({ "a.b": 1, "a-b": 2, "x\\y\nz": 5 }, {}), { process: 'we"ird\\\n' });
  t.true(page.includes('f2bz_a_b_total{process="we\\"ird\\\\\\n"} 3\n'));
  t.true(page.includes("# HELP f2bz_x_y_z_total x\\\\y\\nz\n"));
  t.is(page.split("\n").filter((l) => l.startsWith("f2bz_")).length, 2);
});

test("special values, and the number of series is bounded", (t) => {
  t.is(formatValue(Number.NaN), "NaN");
  t.is(formatValue(Number.POSITIVE_INFINITY), "+Inf");
  t.is(formatValue(Number.NEGATIVE_INFINITY), "-Inf");
  t.is(formatValue(1.5), "1.5");
  t.is(formatValue(1e21), "1e+21");
  const many = Object.fromEntries(Array.from({ length: MAX_SERIES + 50 }, (_, i) => [`c${i}`, i]));
  t.is(samples(many, {}).length, MAX_SERIES);
});
