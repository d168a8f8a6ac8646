import { type ChildProcess, spawn } from "node:child_process";
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { stringify } from "yaml";
import type { RunningPublisher } from "../src/publisher/daemon.js";
import { startPublisher } from "../src/publisher/daemon.js";
import { MONITOR_STATE_FILE } from "../src/state/files.js";
import { benchAddress, inScratch, type Scratch, silent } from "./lib/cluster.js";
import type { BenchResult } from "./lib/result.js";

export interface MonitorBurstOptions {
  /** Ban lines appended at once. */
  lines: number;
  /**
   * bin/f2bz.js of a build to compare with (say, a worktree of the commit before chunked commits:
   * one outbox transaction per line), run on the same burst in the same run.
   */
  baselineCli?: string;
}

const CLI = fileURLToPath(new URL("../bin/f2bz.js", import.meta.url));
const DEADLINE_MS = 600_000;

/**
 * (i) A burst of `Ban` lines appended at once to the log the built monitor tails, a real publisher
 * accepting: time until the monitor stored every line's event (its stored log position reaches the
 * end of the burst) and until the publisher acknowledged all of them (nothing pending), and how many
 * the publisher had acknowledged when the last line was stored (delivery during the burst).
 */
export async function benchMonitorBurst(options: MonitorBurstOptions): Promise<BenchResult> {
  const started = Date.now();
  const sides = [{ what: "f2bz monitor, chunked commits", cli: CLI }];
  if (options.baselineCli)
    sides.unshift({ what: "baseline build (per-line commits)", cli: options.baselineCli });
  const measured: { what: string; burst: Burst }[] = [];
  for (const side of sides) {
    measured.push({
      what: side.what,
      burst: await inScratch("monitor", (dir) => burst(dir, side.cli, options.lines)),
    });
  }
  const rate = (ms: number) => (options.lines * 1000) / ms;
  const base = measured.length > 1 ? measured[0] : undefined;
  return {
    name: "monitor",
    title: `(i) monitor burst: ${options.lines} Ban lines appended at once, built monitor → in-process publisher`,
    rows: measured.flatMap(({ what, burst: b }) => [
      {
        what: `${what}: all stored`,
        value: rate(b.storedMs),
        unit: "lines/s",
        ...(base && base.what !== what
          ? { baseline: `${base.what}: all stored`, cost: b.storedMs / base.burst.storedMs }
          : {}),
      },
      {
        what: `${what}: all acknowledged`,
        value: rate(b.ackedMs),
        unit: "events/s",
        ...(base && base.what !== what
          ? { baseline: `${base.what}: all acknowledged`, cost: b.ackedMs / base.burst.ackedMs }
          : {}),
      },
    ]),
    notes: [
      ...measured.map(
        ({ what, burst: b }) =>
          `${what}: stored in ${(b.storedMs / 1000).toFixed(2)} s, acknowledged in ${(b.ackedMs / 1000).toFixed(2)} s; ${b.ackedWhenStored} acknowledged when the last line was stored, ${b.ackedFirst3s} in the first 3 s`,
      ),
      "one run per side (a burst is long enough to average itself); stored/acknowledged read from the monitor's state file every 10 ms",
    ],
    seconds: (Date.now() - started) / 1000,
    rssMiB: process.memoryUsage.rss() / 2 ** 20,
  };
}

interface Burst {
  storedMs: number;
  ackedMs: number;
  ackedWhenStored: number;
  ackedFirst3s: number;
}

async function burst(dir: Scratch, cli: string, lines: number): Promise<Burst> {
  const publisherId = await dir.identity("pub");
  await dir.identity("mon", "monitor");
  const publisher = await startPublisher(dir.publisherConfig(publisherId), silent);
  const log = path.join(dir.dir, "fail2ban.log");
  await writeFile(log, "");
  const stateDir = path.join(dir.dir, "monitor-state");
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const config = path.join(dir.dir, "monitor.yaml");
  await writeFile(
    config,
    stringify({
      node: { name: "mon", identity: path.join(dir.dir, "keys", "mon.key_secret"), stateDir },
      monitor: {
        log,
        pollInterval: "100ms",
        publishers: [{ submit: publisher.endpoints.submit, key: path.join(dir.dir, "keys", "pub.key") }],
      },
      logging: { level: "info" },
    }),
  );
  const monitor = spawn(process.execPath, [cli, "monitor", "--config", config], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  try {
    await started(monitor);
    const text = Array.from({ length: lines }, (_, i) => banLine(benchAddress(i + 1))).join("");
    const t0 = performance.now();
    await appendFile(log, text);
    const end = Buffer.byteLength(text);
    const state = new Database(path.join(stateDir, MONITOR_STATE_FILE), {
      readonly: true,
      fileMustExist: true,
    });
    try {
      return await watch(state, publisher, t0, end, lines);
    } finally {
      state.close();
    }
  } finally {
    monitor.kill("SIGTERM");
    await new Promise((resolve) => (monitor.exitCode === null ? monitor.once("exit", resolve) : resolve(0)));
    await publisher.close();
  }
}

async function watch(
  state: Database.Database,
  publisher: RunningPublisher,
  t0: number,
  end: number,
  lines: number,
): Promise<Burst> {
  const offset = state.prepare("SELECT offset FROM position WHERE source = 'file'");
  const pending = state.prepare("SELECT count(*) AS n FROM pending");
  const acked = () => publisher.metrics.get("submissions_accepted_total", { outcome: "broadcast" });
  let storedMs: number | undefined;
  let ackedWhenStored = 0;
  let ackedFirst3s: number | undefined;
  for (;;) {
    const now = performance.now() - t0;
    if (now > DEADLINE_MS) throw new Error(`monitor burst did not finish in ${DEADLINE_MS} ms`);
    if (ackedFirst3s === undefined && now >= 3_000) ackedFirst3s = acked();
    const stored = (offset.get() as { offset: number } | undefined)?.offset ?? 0;
    if (storedMs === undefined && stored >= end) {
      storedMs = now;
      ackedWhenStored = acked();
    }
    if (storedMs !== undefined && acked() >= lines && (pending.get() as { n: number }).n === 0) {
      return { storedMs, ackedMs: now, ackedWhenStored, ackedFirst3s: ackedFirst3s ?? acked() };
    }
    await delay(10);
  }
}

function started(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    let errors = "";
    let ready = false;
    child.stderr?.on("data", (chunk: Buffer) => {
      errors += chunk.toString();
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      // Read on to the end: a monitor whose stdout pipe fills up blocks.
      if (ready) return;
      buffered += chunk.toString();
      if (buffered.includes('"monitor started"')) {
        ready = true;
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`monitor exited with ${code}: ${errors.trim()}`)));
  });
}

/** fail2ban 1.0.2's file format. */
function banLine(ip: string): string {
  const d = new Date();
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const stamp = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())},${p(d.getMilliseconds(), 3)}`;
  return `${stamp} fail2ban.actions        [4242]: NOTICE  [sshd] Ban ${ip}\n`;
}
