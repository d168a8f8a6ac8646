import test from "ava";
import { CATALOGUE } from "../../src/metrics/catalogue.js";
import { formatValue, render, renderFamilies } from "../../src/metrics/exposition.js";

test("a family: HELP, TYPE, one sample per series with the common labels first, newline at the end", (t) => {
  const page = renderFamilies(
    [
      {
        name: "snapshots_total",
        spec: CATALOGUE.snapshots_total,
        series: [
          { labels: { result: "served" }, value: 3 },
          { labels: { result: "failed" }, value: 0 },
        ],
      },
    ],
    { process: "publisher" },
  );
  t.is(
    page,
    [
      "# HELP f2bz_snapshots_total snapshot streams, by how they ended",
      "# TYPE f2bz_snapshots_total counter",
      'f2bz_snapshots_total{process="publisher",result="served"} 3',
      'f2bz_snapshots_total{process="publisher",result="failed"} 0',
      "",
    ].join("\n"),
  );
  t.is(renderFamilies([], { process: "monitor" }), "");
});

test("label values are escaped (the version label of build_info comes from package.json)", (t) => {
  const page = renderFamilies(
    [
      {
        name: "build_info",
        spec: CATALOGUE.build_info,
        series: [{ labels: { version: 'x"} 1\n\\' }, value: 1 }],
      },
    ],
    { process: "monitor" },
  );
  t.true(page.includes('f2bz_build_info{process="monitor",version="x\\"} 1\\n\\\\"} 1\n'));
  t.is(page.split("\n").filter((l) => l.startsWith("f2bz_")).length, 1);
});

test("process samples keep their own names; special values", (t) => {
  t.is(
    render([{ name: "process_start_time_seconds", type: "gauge", help: "start", value: 5 }], {
      process: "x",
    }),
    '# HELP process_start_time_seconds start\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds{process="x"} 5\n',
  );
  t.is(formatValue(Number.NaN), "NaN");
  t.is(formatValue(Number.POSITIVE_INFINITY), "+Inf");
  t.is(formatValue(Number.NEGATIVE_INFINITY), "-Inf");
  t.is(formatValue(1.5), "1.5");
  t.is(formatValue(1e21), "1e+21");
});
