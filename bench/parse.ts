import { readFileSync } from "node:fs";
import { parseLogLine } from "../src/fail2ban/log-line.js";
import { PATHOLOGICAL_LINES } from "../test/fail2ban/fixtures/pathological-lines.js";
import type { BenchResult, Row } from "./lib/result.js";
import { median, opsPerSecond, range } from "./lib/stats.js";

export interface ParseOptions {
  rounds: number;
  /** How long each side runs per round. */
  msPerOp: number;
}

/**
 * (d) The log-line parser against lines built to make it backtrack (test/fail2ban/fixtures). A
 * regular expression that retries at every position costs quadratically more per byte on a long
 * line; this one must cost about what real fail2ban lines cost per byte. Baseline: parsing the real
 * lines of a captured fail2ban 1.0.2 run (the fixture the tests use), per byte.
 */
export async function benchParse(options: ParseOptions): Promise<BenchResult> {
  const started = Date.now();
  const real = readFileSync(
    new URL("../test/fail2ban/fixtures/f2b-1.0.2-lifecycle.log", import.meta.url),
    "utf8",
  )
    .split("\n")
    .filter((l) => l.length > 0);
  const pathological = PATHOLOGICAL_LINES.map((p) => p.line);
  const bytes = (lines: readonly string[]) => lines.reduce((n, l) => n + l.length, 0);
  const sides: Record<string, { lines: readonly string[]; bytes: number }> = {
    "real fail2ban lines (baseline)": { lines: real, bytes: bytes(real) },
    "pathological lines of the maximum length": { lines: pathological, bytes: bytes(pathological) },
  };
  const names = Object.keys(sides);
  const run = (name: string) => () => {
    for (const line of sides[name]!.lines) parseLogLine(line);
  };
  for (const name of names) await opsPerSecond(run(name), 50, 1); // warm-up
  const rates = new Map<string, number[]>(names.map((n) => [n, []]));
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      // Bytes per second: the sides differ in line count and length.
      rates.get(name)!.push((await opsPerSecond(run(name), options.msPerOp, 1)) * sides[name]!.bytes);
    }
  }
  const [baseline] = names as [string, string];
  const rows: Row[] = names.map((name) => {
    const own = rates.get(name)!;
    const costs = own.map((r, i) => rates.get(baseline)![i]! / r);
    return {
      what: name,
      value: median(own) / 2 ** 20,
      unit: "MiB/s",
      ...(name === baseline ? {} : { baseline, cost: median(costs), costRange: range(costs) }),
    };
  });
  return {
    name: "parse",
    title: `(d) parseLogLine per byte, ${real.length} real lines vs ${pathological.length} built to backtrack, ${options.rounds} rounds × ${options.msPerOp} ms`,
    rows,
    notes: [
      "cost = baseline bytes/s ÷ bytes/s, per round; linear-time patterns keep it at 1× or below, backtracking ones grow with the line length",
    ],
    seconds: (Date.now() - started) / 1000,
    rssMiB: process.memoryUsage.rss() / 2 ** 20,
  };
}
