import {
  CATALOGUE,
  type CounterName,
  type GaugeName,
  type HistogramName,
  type LabelsOf,
  type MetricName,
  type MetricSpec,
  type ProcessName,
} from "./catalogue.js";

type Labels = Readonly<Record<string, string>>;
/** A label argument when the metric has labels, none when it has not: checked at compile time. */
type LabelArgs<N extends MetricName> = LabelsOf<N> extends undefined ? [] : [labels: LabelsOf<N>];

export interface HistogramValue {
  /** Cumulative counts per upper bound, `+Inf` last. */
  buckets: { le: number; count: number }[];
  sum: number;
  count: number;
}

export interface Series {
  labels: Labels;
  value: number | HistogramValue;
}

export interface Family {
  name: MetricName;
  spec: MetricSpec;
  series: Series[];
}

/**
 * One process's metrics, by the catalogue: every series of every metric of the process exists from
 * construction, at 0. Names and label values are checked by the compiler; a value outside the
 * catalogue (reached through a cast) throws, as any other programming error.
 */
export class Metrics {
  private readonly families = new Map<MetricName, Map<string, Series>>();
  private readonly collectors: (() => void)[] = [];

  constructor(readonly process: ProcessName) {
    for (const [name, spec] of Object.entries(CATALOGUE) as [MetricName, MetricSpec][]) {
      if (!spec.processes.includes(process) || name === "build_info") continue;
      const series = new Map<string, Series>();
      for (const labels of combinations(spec.labels ?? {})) {
        series.set(keyOf(labels), { labels, value: spec.type === "histogram" ? emptyHistogram(spec) : 0 });
      }
      this.families.set(name, series);
    }
  }

  inc<N extends CounterName>(name: N, ...args: [...LabelArgs<N>, by?: number]): void {
    const [labels, by] = split(args);
    const series = this.series(name, labels);
    (series.value as number) += by ?? 1;
  }

  set<N extends GaugeName>(name: N, ...args: [...LabelArgs<N>, value: number]): void {
    const [labels, value] = split(args);
    this.series(name, labels).value = value ?? 0;
  }

  /** Records one duration, in seconds. */
  observe<N extends HistogramName>(name: N, ...args: [...LabelArgs<N>, seconds: number]): void {
    const [labels, seconds = 0] = split(args);
    const h = this.series(name, labels).value as HistogramValue;
    for (const b of h.buckets) if (seconds <= b.le) b.count++;
    h.sum += seconds;
    h.count++;
  }

  /** A counter's or gauge's value, or a histogram's count: for `status`, logs and tests. */
  get<N extends MetricName>(name: N, ...args: LabelArgs<N>): number {
    const value = this.series(name, (args[0] as Labels | undefined) ?? {}).value;
    return typeof value === "number" ? value : value.count;
  }

  /** The counters that are not 0, as `name{label="value"}`: a line for a log at shutdown. */
  summary(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, series] of this.families) {
      if (CATALOGUE[name].type !== "counter") continue;
      for (const s of series.values()) {
        if (s.value === 0) continue;
        const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${v}"`);
        out[labels.length > 0 ? `${name}{${labels.join(",")}}` : name] = s.value as number;
      }
    }
    return out;
  }

  /** Runs before each `collect()`: where a daemon sets the gauges it reads cheaply from its state. */
  onCollect(refresh: () => void): void {
    this.collectors.push(refresh);
  }

  /**
   * Every family of the process, in catalogue order. A refresh that throws (a state file busy, say)
   * leaves its gauges at their last values and is reported to `onError`, never costing the rest.
   */
  collect(onError: (error: unknown) => void = () => {}): Family[] {
    for (const refresh of this.collectors) {
      try {
        refresh();
      } catch (error) {
        onError(error);
      }
    }
    return [...this.families].map(([name, series]) => ({
      name,
      spec: CATALOGUE[name],
      series: [...series.values()],
    }));
  }

  private series(name: MetricName, labels: Labels): Series {
    const found = this.families.get(name)?.get(keyOf(labels));
    if (found) return found;
    throw new TypeError(`metric '${name}' ${JSON.stringify(labels)} is not in the ${this.process} catalogue`);
  }
}

function split(args: readonly unknown[]): [Labels, number | undefined] {
  const [first, second] = args;
  return typeof first === "object" && first !== null
    ? [first as Labels, second as number | undefined]
    : [{}, first as number | undefined];
}

/** Label names sorted, so that `{a, b}` and `{b, a}` are one series. */
function keyOf(labels: Labels): string {
  return JSON.stringify(
    Object.keys(labels)
      .sort()
      .map((k) => [k, labels[k]]),
  );
}

function combinations(labels: Readonly<Record<string, readonly string[]>>): Labels[] {
  let out: Record<string, string>[] = [{}];
  for (const [name, values] of Object.entries(labels)) {
    out = out.flatMap((partial) => values.map((v) => ({ ...partial, [name]: v })));
  }
  return out;
}

function emptyHistogram(spec: MetricSpec): HistogramValue {
  const bounds = [...(spec.buckets ?? []), Number.POSITIVE_INFINITY];
  return { buckets: bounds.map((le) => ({ le, count: 0 })), sum: 0, count: 0 };
}
