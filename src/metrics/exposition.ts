/**
 * The Prometheus text exposition format 0.0.4, for a handful of counters and gauges: pure
 * functions of their values. Counter names of f2bz (`dropped.rate-limited`) become metric names
 * (`f2bz_dropped_rate_limited_total`); the original name is the HELP text.
 */
import type { Family, HistogramValue } from "./registry.js";

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Bounds a page whatever a daemon counts: counter names are f2bz's own, but a bug could mint many. */
export const MAX_SERIES = 2_000;

export interface Sample {
  /** Already a valid metric name. */
  name: string;
  type: "counter" | "gauge";
  help: string;
  value: number;
}

/** `f2bz_` + the name in lower case, every run of other characters one `_`, no `_` at either end. */
export function metricName(name: string): string {
  const body = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "_")
    .replace(/^_+|_+$/g, "");
  return `f2bz_${body || "unnamed"}`;
}

/**
 * Counters as `f2bz_<name>_total`, gauges as `f2bz_<name>`. Two names that sanitize alike (`a.b`
 * and `a-b`) are one series: counters add up, the last gauge wins.
 */
export function samples(counters: Record<string, number>, gauges: Record<string, number>): Sample[] {
  const byName = new Map<string, Sample>();
  const add = (type: Sample["type"], original: string, value: number) => {
    const name = type === "counter" ? `${metricName(original)}_total` : metricName(original);
    const existing = byName.get(name);
    if (existing && existing.type === "counter" && type === "counter") existing.value += value;
    else if (existing || byName.size < MAX_SERIES) byName.set(name, { name, type, help: original, value });
  };
  for (const [name, value] of Object.entries(counters)) add("counter", name, value);
  for (const [name, value] of Object.entries(gauges)) add("gauge", name, value);
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The page: HELP, TYPE and one sample per metric, each with the given labels; ends with a newline. */
export function render(list: readonly Sample[], labels: Record<string, string>): string {
  const labelText = Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(",");
  const suffix = labelText ? `{${labelText}}` : "";
  const lines: string[] = [];
  for (const s of list) {
    lines.push(`# HELP ${s.name} ${escapeHelp(s.help)}`);
    lines.push(`# TYPE ${s.name} ${s.type}`);
    lines.push(`${s.name}${suffix} ${formatValue(s.value)}`);
  }
  return lines.length > 0 ? `${lines.join("\n")}\n` : "";
}

/**
 * The catalogue's families (see registry.ts) as `f2bz_<name>`, each series with its own labels
 * after the process-wide ones; histograms as `_bucket{le}`, `_sum` and `_count`.
 */
export function renderFamilies(families: readonly Family[], common: Record<string, string>): string {
  const lines: string[] = [];
  for (const family of families) {
    const name = `f2bz_${family.name}`;
    lines.push(`# HELP ${name} ${escapeHelp(family.spec.help)}`);
    lines.push(`# TYPE ${name} ${family.spec.type}`);
    for (const series of family.series) {
      const labels = { ...common, ...series.labels };
      if (typeof series.value === "number") {
        lines.push(`${name}${labelText(labels)} ${formatValue(series.value)}`);
        continue;
      }
      const h: HistogramValue = series.value;
      for (const b of h.buckets) {
        lines.push(`${name}_bucket${labelText({ ...labels, le: formatValue(b.le) })} ${b.count}`);
      }
      lines.push(`${name}_sum${labelText(labels)} ${formatValue(h.sum)}`);
      lines.push(`${name}_count${labelText(labels)} ${h.count}`);
    }
  }
  return lines.length > 0 ? `${lines.join("\n")}\n` : "";
}

function labelText(labels: Record<string, string>): string {
  const text = Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(",");
  return text ? `{${text}}` : "";
}

export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

const escapeHelp = (text: string) => text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
const escapeLabel = (text: string) => escapeHelp(text).replaceAll('"', '\\"');
