import { readFile } from "node:fs/promises";
import test from "ava";
import { CATALOGUE, type MetricName, type MetricSpec } from "../../src/metrics/catalogue.js";

/**
 * tools/grafana/f2bz-dashboard.json is read by operators' Grafana, not by f2bz: nothing else notices
 * a panel on a renamed or misspelt metric, which just stays empty. So every expression is checked
 * against the catalogue, and the metrics an operator watches must each be on some panel.
 */
const DASHBOARD = new URL("../../tools/grafana/f2bz-dashboard.json", import.meta.url);
const SUFFIXES = ["_bucket", "_sum", "_count"] as const;
/** Labels every series has: Prometheus's own and the daemon's `process` (metrics/server.ts). */
const COMMON_LABELS = ["instance", "job", "process"];
/** What an operator needs on the dashboard (issue 14, point 8). */
const WATCHED: readonly MetricName[] = [
  "build_info",
  "events_dropped_total",
  "events_accepted_total",
  "submissions_accepted_total",
  "zap_denied_total",
  "bans_active",
  "outbox_events",
  "heartbeat_age_seconds",
  "publish_latency_seconds",
  "apply_latency_seconds",
  "fail2ban_call_duration_seconds",
  "helper_requests_refused_total",
];

interface Panel {
  title?: string;
  type?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}
interface Dashboard {
  schemaVersion?: number;
  panels?: Panel[];
  templating?: { list?: { name: string; type: string; query?: unknown }[] };
}

interface Reference {
  spec: MetricSpec;
  name: MetricName;
  /** `_bucket`, `_sum`, `_count` on a histogram; "" otherwise. */
  suffix: string;
}

/** A series name as exposed, resolved to its catalogue entry; undefined when the catalogue lacks it. */
function resolve(series: string): Reference | undefined {
  const bare = series.slice("f2bz_".length);
  if (bare in CATALOGUE) {
    const spec: MetricSpec = CATALOGUE[bare as MetricName];
    return spec.type === "histogram" ? undefined : { spec, name: bare as MetricName, suffix: "" };
  }
  for (const suffix of SUFFIXES) {
    const base = bare.slice(0, -suffix.length);
    if (!bare.endsWith(suffix) || !(base in CATALOGUE)) continue;
    const spec: MetricSpec = CATALOGUE[base as MetricName];
    if (spec.type === "histogram") return { spec, name: base as MetricName, suffix };
  }
  return undefined;
}

function labelsOf(ref: Reference): Set<string> {
  const labels = new Set([...COMMON_LABELS, ...Object.keys(ref.spec.labels ?? {})]);
  if (ref.suffix === "_bucket") labels.add("le");
  if (ref.name === "build_info") labels.add("version");
  return labels;
}

function exprsOf(panels: readonly Panel[]): { title: string; expr: string }[] {
  return panels.flatMap((panel) => [
    ...(panel.targets ?? []).flatMap((target) =>
      target.expr === undefined ? [] : [{ title: panel.title ?? "?", expr: target.expr }],
    ),
    ...exprsOf(panel.panels ?? []),
  ]);
}

/** Every problem of one PromQL expression against the catalogue; empty when it is sound. */
function checkExpr(expr: string): string[] {
  const problems: string[] = [];
  const refs = new Map<string, Reference>();
  for (const [series] of expr.matchAll(/f2bz_[a-z0-9_]+/g)) {
    const ref = resolve(series);
    if (ref) refs.set(series, ref);
    else problems.push(`'${series}' is not a series of the catalogue`);
  }
  for (const [, fn, series] of expr.matchAll(/\b(rate|irate|increase)\(\s*(f2bz_[a-z0-9_]+)/g)) {
    const ref = refs.get(series!);
    if (ref && ref.spec.type === "gauge") problems.push(`${fn}() of gauge '${series}'`);
  }
  for (const [, series] of expr.matchAll(/histogram_quantile\([^,]+,[^f]*?(f2bz_[a-z0-9_]+)/g)) {
    if (refs.get(series!)?.suffix !== "_bucket")
      problems.push(`histogram_quantile() of '${series}', not a _bucket`);
  }
  // Labels named in selectors, `by (…)` and legends must exist on the series of the expression.
  const known = new Set([...COMMON_LABELS, ...[...refs.values()].flatMap((ref) => [...labelsOf(ref)])]);
  const named = [
    ...[...expr.matchAll(/\bby \(([^)]*)\)/g)].flatMap(([, list]) => list!.split(",").map((l) => l.trim())),
    ...[...expr.matchAll(/[{,]\s*([a-z_]+)\s*(?:=~|!~|!=|=)/g)].map(([, label]) => label!),
  ];
  for (const label of named)
    if (!known.has(label)) problems.push(`label '${label}' is on none of its series`);
  return problems;
}

function check(dashboard: Dashboard): string[] {
  return exprsOf(dashboard.panels ?? []).flatMap(({ title, expr }) =>
    checkExpr(expr).map((problem) => `panel '${title}': ${problem}`),
  );
}

function referenced(dashboard: Dashboard): Set<MetricName> {
  const names = exprsOf(dashboard.panels ?? []).flatMap(({ expr }) =>
    [...expr.matchAll(/f2bz_[a-z0-9_]+/g)].flatMap(([series]) => resolve(series)?.name ?? []),
  );
  const variables = (dashboard.templating?.list ?? []).flatMap((v) =>
    [...JSON.stringify(v.query ?? "").matchAll(/f2bz_[a-z0-9_]+/g)].flatMap(
      ([series]) => resolve(series)?.name ?? [],
    ),
  );
  return new Set([...names, ...variables]);
}

async function load(): Promise<{ text: string; dashboard: Dashboard }> {
  const text = await readFile(DASHBOARD, "utf8");
  return { text, dashboard: JSON.parse(text) as Dashboard };
}

test("every series, function and label of the dashboard is in the metrics catalogue", async (t) => {
  const { dashboard } = await load();
  t.true(exprsOf(dashboard.panels ?? []).length >= WATCHED.length);
  t.deepEqual(check(dashboard), []);
});

test("every metric an operator watches is on some panel", async (t) => {
  const { dashboard } = await load();
  const seen = referenced(dashboard);
  t.deepEqual(
    WATCHED.filter((name) => !seen.has(name)),
    [],
  );
});

test("a Grafana dashboard with a Prometheus data source variable and instance and process variables", async (t) => {
  const { dashboard } = await load();
  t.true((dashboard.schemaVersion ?? 0) >= 36);
  const variables = new Map((dashboard.templating?.list ?? []).map((v) => [v.name, v]));
  t.like(variables.get("datasource"), { type: "datasource", query: "prometheus" });
  t.like(variables.get("instance"), { type: "query" });
  t.like(variables.get("process"), { type: "query" });
  // Every query goes through the variables, so one dashboard serves any Prometheus and any host.
  for (const { title, expr } of exprsOf(dashboard.panels ?? [])) {
    if (!expr.includes("f2bz_")) continue;
    t.true(expr.includes('instance=~"$instance"') && expr.includes('process=~"$process"'), title);
  }
});

test("the checks catch a misspelt metric, rate() of a gauge, a quantile of a counter and an unknown label", (t) => {
  const panel = (expr: string): Dashboard => ({ panels: [{ title: "p", targets: [{ expr }] }] });
  t.deepEqual(check(panel('f2bz_outbox_event{process=~"$process"}')), [
    "panel 'p': 'f2bz_outbox_event' is not a series of the catalogue",
  ]);
  t.deepEqual(check(panel("rate(f2bz_bans_active[5m])")), ["panel 'p': rate() of gauge 'f2bz_bans_active'"]);
  t.deepEqual(check(panel("histogram_quantile(0.9, rate(f2bz_publish_latency_seconds_count[5m]))")), [
    "panel 'p': histogram_quantile() of 'f2bz_publish_latency_seconds_count', not a _bucket",
  ]);
  t.deepEqual(check(panel("f2bz_publish_latency_seconds")), [
    "panel 'p': 'f2bz_publish_latency_seconds' is not a series of the catalogue",
  ]);
  t.deepEqual(check(panel("sum by (reson) (rate(f2bz_zap_denied_total[5m]))")), [
    "panel 'p': label 'reson' is on none of its series",
  ]);
  t.deepEqual(check(panel("f2bz_events_dropped_bucket")), [
    "panel 'p': 'f2bz_events_dropped_bucket' is not a series of the catalogue",
  ]);
});

test("a misspelt name in a copy of the dashboard fails the check", async (t) => {
  const { text } = await load();
  t.true(text.includes("f2bz_heartbeat_age_seconds"));
  const copy = JSON.parse(text.replaceAll("f2bz_heartbeat_age_seconds", "f2bz_heartbeat_age")) as Dashboard;
  t.true(check(copy).some((problem) => problem.includes("'f2bz_heartbeat_age' is not a series")));
  t.false(referenced(copy).has("heartbeat_age_seconds"));
});
