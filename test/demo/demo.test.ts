import { readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import test from "ava";
import { summarize } from "../../src/demo/summary.js";
import { runCli } from "../helpers/cli.js";

const demoDirs = async () => (await readdir(tmpdir())).filter((n) => n.startsWith("f2bz-demo-")).sort();

test.serial(
  "f2bz demo --json runs a real cluster and reports every event delivered exactly once",
  async (t) => {
    t.timeout(90_000);
    const before = await demoDirs();
    const result = await runCli(["demo", "--nodes", "3", "--events", "6", "--duration", "2", "--json"], {
      timeoutMs: 80_000,
    });
    t.is(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split("\n");
    t.is(lines.length, 1, "only the summary on stdout");
    const summary = JSON.parse(lines[0]!) as Record<string, unknown> & {
      applied: Record<string, number>;
      latencyMs: { p50: number; p99: number };
    };
    t.is(summary.sent, 12);
    t.is(summary.bans, 6);
    t.is(summary.unbans, 6);
    t.is(summary.lost, 0);
    t.is(summary.duplicated, 0);
    t.is(summary.echoed, 0);
    t.is(summary.cleanExit, true);
    t.is(summary.ok, true);
    // Each node receives every event of the two others: 12 events, 2 origins out of 3 per event.
    t.deepEqual(Object.keys(summary.applied).sort(), ["node1", "node2", "node3"]);
    t.is(
      Object.values(summary.applied).reduce((a, b) => a + b, 0),
      12 * 2,
    );
    t.true(summary.latencyMs.p50 >= 0 && summary.latencyMs.p99 >= summary.latencyMs.p50);
    t.deepEqual(await demoDirs(), before, "the temporary directory is removed");
  },
);

test.serial(
  "f2bz demo shows bans travelling and a summary, and --keep leaves an inspectable cluster",
  async (t) => {
    t.timeout(90_000);
    const result = await runCli(["demo", "--nodes", "2", "--events", "3", "--duration", "1", "--keep"], {
      timeoutMs: 80_000,
    });
    t.is(result.code, 0, result.stderr);
    t.regex(result.stdout, /^ {2}ban +\S+ +node\d → node\d \d+ ms$/m);
    t.regex(result.stdout, /^ {2}unban +\S+ +node\d → node\d \d+ ms$/m);
    t.regex(result.stdout, /lost 0, duplicated 0, echoed 0/);
    t.regex(result.stdout, /^OK: every event reached every other node exactly once\.$/m);
    const kept = /^kept (\S+):$/m.exec(result.stdout)?.[1];
    t.truthy(kept);
    t.teardown(async () => {
      const { rm } = await import("node:fs/promises");
      await rm(kept!, { recursive: true, force: true });
    });
    const list = await runCli(["keys", "list", "--keys", `${kept}/publisher/keys`]);
    t.is(list.code, 0, list.stderr);
    t.regex(list.stdout, /monitor +node1 +active/);
    t.regex(list.stdout, /subscriber +node2 +active/);
    const check = await runCli(["check-config", "--config", `${kept}/node1.yaml`]);
    t.is(check.code, 0, check.stderr);
  },
);

test("f2bz demo refuses bad options with one line", async (t) => {
  for (const args of [["--nodes", "1"], ["--events", "x"], ["--duration", "-3"], ["extra"]]) {
    const result = await runCli(["demo", ...args]);
    t.is(result.code, 64, args.join(" "));
    t.is(result.stderr.trim().split("\n").length, 1);
    t.notRegex(result.stderr, /\n\s+at /);
  }
});

test("summarize counts lost, duplicated and echoed applications", (t) => {
  const sent = [
    { key: "ban 203.0.113.1", kind: "ban" as const, ip: "203.0.113.1", origin: "a", writtenAt: 1000 },
    { key: "ban 203.0.113.2", kind: "ban" as const, ip: "203.0.113.2", origin: "b", writtenAt: 2000 },
  ];
  const reports = [
    { node: "b", kind: "ban" as const, ip: "203.0.113.1", at: 1010 },
    { node: "b", kind: "ban" as const, ip: "203.0.113.1", at: 1020 },
    { node: "c", kind: "ban" as const, ip: "203.0.113.1", at: 1030 },
    { node: "a", kind: "ban" as const, ip: "203.0.113.1", at: 1040 },
    { node: "a", kind: "ban" as const, ip: "203.0.113.2", at: 2005 },
  ];
  const s = summarize(["a", "b", "c"], sent, reports);
  t.is(s.expectedApplications, 4);
  t.is(s.lost, 1, "203.0.113.2 never reached c");
  t.is(s.duplicated, 1, "203.0.113.1 applied twice on b");
  t.is(s.echoed, 1, "203.0.113.1 applied on its origin a");
  t.deepEqual(s.applied, { a: 1, b: 1, c: 1 });
  t.deepEqual(s.latencyMs, { p50: 10, p90: 30, p99: 30, max: 30 });
  t.false(s.ok);
});
