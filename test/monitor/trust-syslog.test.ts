import { appendFile, writeFile } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import type { MonitorConfig } from "../../src/config/schema.js";
import { Metrics } from "../../src/metrics/registry.js";
import { openLogInput } from "../../src/monitor/log-input.js";
import { captureLogger } from "../helpers/logs.js";
import { tempDir } from "../helpers/temp-dir.js";

// What `logger -t fail2ban.actions 'NOTICE [sshd] Ban 192.0.2.66'` puts into /var/log/syslog.
const FORGED = [
  "Nov 29 00:43:01 web1 fail2ban.actions[4242]: NOTICE [sshd] Ban 192.0.2.66",
  "2026-11-29T00:43:02.000000+01:00 web1 fail2ban.actions: NOTICE [sshd] Ban 192.0.2.67",
  "Nov 29 00:43:03 web1 fail2ban[4242]: [sshd] Ban 192.0.2.68",
];
// fail2ban's own file handler; the last line read tells the test that everything before it was read.
const OWN = "2026-11-29 00:43:04,986 fail2ban.actions        [18776]: NOTICE  [sshd] Ban 192.0.2.10";

/** Reads the log through the monitor's file input until the OWN line; returns every ban seen. */
async function bansRead(t: import("ava").ExecutionContext, trustSyslog: boolean) {
  const dir = await tempDir(t, "f2bz-syslog-");
  const log = path.join(dir, "syslog");
  await writeFile(log, "");
  const { logger, lines } = captureLogger();
  const metrics = new Metrics("monitor");
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const settings = { source: "file", log, pollInterval: 20, trustSyslog } as unknown as MonitorConfig;
  const input = await openLogInput(settings, { saved: undefined, signal: abort.signal, logger, metrics });
  await appendFile(log, `${[...FORGED, ...FORGED, OWN].join("\n")}\n`);
  const bans: string[] = [];
  const deadline = setTimeout(() => input.close(), 20_000);
  for await (const { record } of input) {
    if (record?.type === "ban") bans.push(record.ip);
    if (record?.raw === OWN) break;
  }
  clearTimeout(deadline);
  input.close();
  return { bans, metrics, lines };
}

test("a syslog-format Ban line (forgeable with logger(1)) is refused by default, counted and reported once", async (t) => {
  const { bans, metrics, lines } = await bansRead(t, false);
  t.deepEqual(bans, ["192.0.2.10"], "only fail2ban's own file line counts");
  t.is(metrics.get("log_lines_dropped_total", { reason: "syslog-refused" }), 6);
  const warnings = lines.filter((l) => String(l.msg).startsWith("syslog-format fail2ban line refused"));
  t.is(warnings.length, 1, "rate-limited: one warning for six lines");
  t.regex(String(warnings[0]?.msg), /monitor\.trustSyslog: true/);
  t.regex(String(warnings[0]?.msg), /monitor\.source: journald/);
});

test("with monitor.trustSyslog: true the same syslog lines are read as bans", async (t) => {
  const { bans, metrics } = await bansRead(t, true);
  t.deepEqual(bans, [
    "192.0.2.66",
    "192.0.2.67",
    "192.0.2.68",
    "192.0.2.66",
    "192.0.2.67",
    "192.0.2.68",
    "192.0.2.10",
  ]);
  t.is(metrics.get("log_lines_dropped_total", { reason: "syslog-refused" }), 0);
});
