import { mkdir, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { benchCrypto } from "./crypto.js";
import { benchFanout } from "./fanout.js";
import { ForeignLoad, machine } from "./lib/load.js";
import type { BenchResult } from "./lib/result.js";
import { benchMonitorBurst } from "./monitor-burst.js";
import { benchParse } from "./parse.js";
import { benchSubmit } from "./submit.js";

/**
 * `npm run bench [-- --only crypto,submit,fanout,parse,monitor] [--subs N] [--quick]
 * [--baseline-monitor OTHER/bin/f2bz.js]`: runs the benchmarks
 * (loopback only, well under a minute), prints a table and writes bench/results/latest.json.
 * Figures to compare across runs or machines are the cost ratios, never the absolute numbers.
 */
const { values } = parseArgs({
  options: {
    only: { type: "string" },
    subs: { type: "string" },
    quick: { type: "boolean" },
    "baseline-monitor": { type: "string" },
  },
});
const quick = values.quick === true;
const subscribers = Number(values.subs ?? 10);
if (!Number.isSafeInteger(subscribers) || subscribers < 1 || subscribers > 200) {
  throw new Error(`--subs '${values.subs}' is invalid, expected 1 to 200`);
}
const benches: Record<string, () => Promise<BenchResult>> = {
  crypto: () => benchCrypto({ rounds: quick ? 3 : 5, msPerOp: quick ? 100 : 250 }),
  submit: () => benchSubmit({ rounds: quick ? 2 : 3, msPerRound: quick ? 500 : 1000 }),
  fanout: () => benchFanout({ subscribers, rounds: quick ? 2 : 3, eventsPerRound: quick ? 50 : 200 }),
  parse: () => benchParse({ rounds: quick ? 3 : 5, msPerOp: quick ? 100 : 250 }),
  monitor: () =>
    benchMonitorBurst({
      lines: quick ? 5_000 : 20_000,
      ...(values["baseline-monitor"] ? { baselineCli: values["baseline-monitor"] } : {}),
    }),
};
const selected = values.only?.split(",") ?? Object.keys(benches);
for (const name of selected) {
  if (!(name in benches))
    throw new Error(`--only '${name}' is unknown, expected ${Object.keys(benches).join(", ")}`);
}

const load = new ForeignLoad();
const results: BenchResult[] = [];
for (const name of selected) {
  const result = await benches[name]!();
  results.push(result);
  print(result);
}
const foreign = load.cores();
const info = machine();
process.stdout.write(
  `\n${info.cpus} × ${info.model}, node ${info.node}; other processes used ${foreign === undefined ? "?" : foreign.toFixed(2)} cores meanwhile${(foreign ?? 0) > 0.25 ? " (a noisy run: rerun before trusting the ratios)" : ""}\n`,
);

const file = fileURLToPath(new URL("./results/latest.json", import.meta.url));
await mkdir(fileURLToPath(new URL("./results/", import.meta.url)), { recursive: true });
await writeFile(
  file,
  `${JSON.stringify({ date: new Date().toISOString(), machine: info, foreignLoadCores: foreign ?? null, results }, null, 2)}\n`,
);
process.stdout.write(`written to ${file}\n`);

function print(result: BenchResult): void {
  const width = Math.max(...result.rows.map((r) => r.what.length));
  const lines = [`\n${result.title}  (${result.seconds.toFixed(1)} s)`];
  for (const row of result.rows) {
    const value = `${format(row.value)} ${row.unit}`.padStart(16);
    const cost =
      row.cost === undefined
        ? ""
        : `  cost ${row.cost.toFixed(2)}× [${row.costRange!.map((c) => c.toFixed(2)).join("–")}]`;
    lines.push(`  ${row.what.padEnd(width)}  ${value}${cost}`);
  }
  for (const note of result.notes) lines.push(`  · ${note}`);
  process.stdout.write(`${lines.join("\n")}\n`);
}

function format(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString("en-US") : value.toFixed(1);
}
