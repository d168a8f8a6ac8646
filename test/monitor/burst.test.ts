import { appendFile, rename, truncate, unlink, writeFile } from "node:fs/promises";
import test, { type ExecutionContext } from "ava";
import { spawnDaemon } from "../helpers/cli.js";
import { rssBytes } from "../helpers/proc.js";
import { banLine, cliMonitorConfig, f2bLine, type MonitorLab, monitorLab } from "./helpers.js";

/**
 * The built monitor under load, with the real publisher: a burst far larger than one read, and each
 * kind of rotation while lines keep coming. Every ban reaches the feed exactly once, and the
 * monitor's resident memory stays bounded (read from /proc, as an operator's tools would).
 */

const BURST_DEADLINE_MS = 120_000;
const MiB = 1024 * 1024;

/** The n-th address of 198.18.0.0/15 (RFC 2544's benchmarking range). */
const address = (n: number) => `198.${18 + ((n >> 16) & 1)}.${(n >> 8) & 255}.${n & 255}`;

/** `lines` lines of fail2ban's log, every tenth a ban of a new address (from `first` on). */
function burst(lines: number, first: number): { text: string; ips: string[] } {
  const out: string[] = [];
  const ips: string[] = [];
  for (let i = 0; i < lines; i++) {
    if (i % 10 === 9) {
      const ip = address(first + ips.length);
      ips.push(ip);
      out.push(banLine("sshd", ip));
    } else out.push(f2bLine(`[sshd] Found 192.0.2.${i % 250} - 2026-11-29 00:43:01`, "filter", "INFO"));
  }
  return { text: out.join(""), ips };
}

async function builtMonitor(t: ExecutionContext, lab: MonitorLab) {
  const config = await cliMonitorConfig(lab, { ackTimeout: "2s" });
  const daemon = spawnDaemon(t, ["monitor", "--config", config]);
  await daemon.started("monitor");
  const pid = daemon.child.pid!;
  // Peak resident memory, sampled while the test waits for the feed (a measurement, not a wait).
  let peak = rssBytes(pid);
  const sampler = setInterval(() => {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) {
      try {
        peak = Math.max(peak, rssBytes(pid));
      } catch {
        // Exited between the check and the read: the test fails on the daemon's exit instead.
      }
    }
  }, 50);
  t.teardown(() => clearInterval(sampler));
  return { daemon, baseline: peak, peak: () => peak };
}

test("a 100,000-line burst with one ban in ten: every ban delivered once, the monitor's memory bounded", async (t) => {
  t.timeout(BURST_DEADLINE_MS + 30_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  await feed.ready();
  const { daemon, baseline, peak } = await builtMonitor(t, lab);

  const { text, ips } = burst(100_000, 0);
  await appendFile(lab.logFile, text);
  await feed.waitCount(ips.length, BURST_DEADLINE_MS);
  t.deepEqual(
    feed.describe(),
    ips.map((ip) => `ban sshd ${ip}`),
    "every ban once, in order",
  );
  const growth = peak() - baseline;
  t.log(`monitor RSS ${Math.round(baseline / MiB)} MiB at start, peak ${Math.round(peak() / MiB)} MiB`);
  t.true(growth < 160 * MiB, `monitor RSS grew by ${Math.round(growth / MiB)} MiB during the burst`);
  t.is(await daemon.stop(), 0, daemon.stderr());
});

test("rename+create, copytruncate and delete+recreate while lines keep coming: every ban delivered once", async (t) => {
  t.timeout(BURST_DEADLINE_MS + 30_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  await feed.ready();
  const { daemon, baseline, peak } = await builtMonitor(t, lab);
  const expected: string[] = [];
  let next = 0;
  const write = async (file: string, lines: number) => {
    const b = burst(lines, next);
    next += b.ips.length;
    expected.push(...b.ips.map((ip) => `ban sshd ${ip}`));
    await appendFile(file, b.text);
  };

  // logrotate create: fail2ban writes on to the renamed file until flushlogs, then to the new one.
  await write(lab.logFile, 5_000);
  await rename(lab.logFile, `${lab.logFile}.1`);
  await writeFile(lab.logFile, "");
  await write(`${lab.logFile}.1`, 2_000);
  await write(lab.logFile, 5_000);
  // copytruncate loses what is written between the copy and the truncation by its nature, so the
  // refill comes after everything before it was read.
  await feed.waitCount(expected.length, BURST_DEADLINE_MS);
  await truncate(lab.logFile, 0);
  await write(lab.logFile, 5_000);
  await feed.waitCount(expected.length, BURST_DEADLINE_MS);
  // No rotation tool: deleted and created again, then written on at once.
  await unlink(lab.logFile);
  await write(lab.logFile, 5_000);
  await feed.waitCount(expected.length, BURST_DEADLINE_MS);

  t.deepEqual(feed.describe(), expected, "every ban once, in order");
  const growth = peak() - baseline;
  t.true(growth < 160 * MiB, `monitor RSS grew by ${Math.round(growth / MiB)} MiB`);
  t.is(await daemon.stop(), 0, daemon.stderr());
});
