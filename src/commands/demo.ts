import { fileURLToPath } from "node:url";
import { F2bzError, quote } from "../errors.js";
import type { Command } from "./command.js";

function count(value: unknown, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || !/^\d+$/.test(value) || n < min || n > max) {
    throw new F2bzError(
      "USAGE",
      `--${name} ${quote(String(value))} is invalid, expected a whole number from ${min} to ${max}`,
    );
  }
  return n;
}

const ms = (v: number | null) => (v === null ? "n/a" : `${v} ms`);

export const demo: Command = {
  name: "demo",
  summary: "run a whole cluster on 127.0.0.1 with simulated attacks and show bans travelling",
  usage: "f2bz demo [--nodes N] [--events N] [--duration S] [--json] [--keep]",
  help: [
    "Starts one publisher and N nodes (each a monitor and a dry-run subscriber) as real processes",
    "speaking CURVE, with fresh keys in a temporary directory; writes bans and later unbans into the",
    "nodes' simulated fail2ban logs and shows each one reach every other node, with its latency.",
    "  --nodes N      nodes (default 3, 2 to 10)",
    "  --events N     bans to simulate, each unbanned later (default 30, 1 to 2000)",
    "  --duration S   seconds over which the bans are spread (default 5)",
    "  --json         print only a machine-readable summary on stdout",
    "  --keep         keep the directory (configs, keys, state) and print how to inspect it",
    "Exits 0 when every event reached every other node exactly once and nothing echoed back.",
  ],
  options: {
    nodes: { type: "string" },
    events: { type: "string" },
    duration: { type: "string" },
    json: { type: "boolean" },
    keep: { type: "boolean" },
  },
  async run(ctx) {
    if (ctx.positionals.length > 0)
      throw new F2bzError("USAGE", `unexpected argument ${quote(ctx.positionals[0]!)}`);
    const json = ctx.values.json === true;
    const { runDemo } = await import("../demo/run.js");
    const result = await runDemo({
      nodes: count(ctx.values.nodes, "nodes", 2, 10, 3),
      events: count(ctx.values.events, "events", 1, 2000, 30),
      durationMs: count(ctx.values.duration, "duration", 0, 600, 5) * 1000,
      json,
      keep: ctx.values.keep === true,
      bin: fileURLToPath(new URL("../../bin/f2bz.js", import.meta.url)),
      out: ctx.stdout,
      signal: ctx.signal,
    });
    if (json) {
      ctx.stdout(JSON.stringify(result));
    } else {
      const applied = Object.entries(result.applied)
        .map(([node, n]) => `${node} ${n}`)
        .join(", ");
      ctx.stdout("");
      ctx.stdout(
        `summary: ${result.sent} events sent (${result.bans} bans, ${result.unbans} unbans) in ${(result.durationMs / 1000).toFixed(1)} s`,
      );
      ctx.stdout(`  applied per node: ${applied}  (expected ${result.expectedApplications} in all)`);
      ctx.stdout(
        `  lost ${result.lost}, duplicated ${result.duplicated}, echoed ${result.echoed}, processes stopped cleanly: ${result.cleanExit ? "yes" : "no"}`,
      );
      ctx.stdout(
        `  ban latency (log line written → applied on another node): p50 ${ms(result.latencyMs.p50)}, p99 ${ms(result.latencyMs.p99)}, max ${ms(result.latencyMs.max)}`,
      );
      ctx.stdout(
        `  unban latency (includes the monitor's 5 s hold against shutdown bursts): p50 ${ms(result.unbanLatencyMs.p50)}`,
      );
      ctx.stdout(
        result.ok
          ? "OK: every event reached every other node exactly once."
          : "FAILED: see the counts above.",
      );
      if (result.dir) {
        ctx.stdout(`kept ${result.dir}:`);
        ctx.stdout(`  f2bz keys list --keys ${result.dir}/publisher/keys`);
        ctx.stdout(`  f2bz check-config --config ${result.dir}/node1.yaml`);
        ctx.stdout(
          `  f2bz publisher --config ${result.dir}/publisher.yaml   (and monitor/subscriber --config ${result.dir}/node1.yaml)`,
        );
      }
    }
    return result.ok ? 0 : 1;
  },
};
