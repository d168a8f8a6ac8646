import type { Family, HistogramValue } from "./registry.js";

/**
 * The Prometheus text exposition format 0.0.4: pure functions of the values. The catalogue's
 * families (catalogue.ts) as `f2bz_<name>`, and the standard process metrics by their own names.
 */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface Sample {
  /** Already a valid metric name. */
  name: string;
  type: "counter" | "gauge";
  help: string;
  value: number;
}

/** The page: HELP, TYPE and one sample per metric, each with the given labels; ends with a newline. */
export function render(list: readonly Sample[], labels: Record<string, string>): string {
  const suffix = labelText(labels);
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
