/**
 * What each benchmark returns: rows of one measured figure each, some compared with a baseline
 * measured in the same run. `cost` is f2bz's time per operation over the baseline's (the inverse
 * ratio of their rates, or the ratio of their latencies): 1.0× costs the same, 3.0× three times as
 * much. It is the median of per-round ratios, each round measuring both sides back to back.
 */
export interface Row {
  what: string;
  value: number;
  unit: string;
  /** The `what` of the baseline row this one is compared with. */
  baseline?: string;
  cost?: number;
  costRange?: [number, number];
}

export interface BenchResult {
  name: string;
  title: string;
  rows: Row[];
  notes: string[];
  seconds: number;
  rssMiB: number;
}
