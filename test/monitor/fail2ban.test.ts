import { promises as fs } from "node:fs";
import anyTest from "ava";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";
import { waitFor } from "../harness/wait.js";
import { DEADLINE_MS, monitorLab } from "./helpers.js";

/**
 * The monitor against a real Debian fail2ban-server (the project's own lab): what fail2ban logs for
 * filter bans, manual bans, unbans, a restart with active bans and a logrotate `create` rotation,
 * read by the real monitor and delivered to a real publisher, as a subscriber sees it.
 */
const test = ensureFail2ban(anyTest);

async function setup(t: import("ava").ExecutionContext) {
  const lab = await startFail2ban({ jails: ["sshd-test", "web-01"], label: "mon" });
  t.teardown(() => lab.cleanup());
  const cluster = await monitorLab(t, { logFile: lab.paths.log });
  const { feed, publisher } = await cluster.startPublisher();
  const { monitor } = await cluster.startMonitor();
  const ok = async (args: string[]) => {
    const r = await lab.client(args);
    if (r.code !== 0)
      throw new Error(`fail2ban-client ${args.join(" ")}: exit ${r.code} ${r.stdout}${r.stderr}`);
  };
  return { lab, feed, publisher, monitor, ok };
}

test("bans and unbans of a real fail2ban, IPv4 and IPv6, become exactly those events; its restart none", async (t) => {
  t.timeout(45_000);
  const { lab, feed, monitor, ok } = await setup(t);

  // A filter ban of each family, one at a time so that the expected order is fixed.
  await lab.fail("198.51.100.10", "sshd-test");
  await feed.waitEvent("ban", "198.51.100.10");
  await lab.fail("2001:db8::10", "web-01");
  await feed.waitEvent("ban", "2001:db8::10");
  // Unbans are held a few seconds (a stop of the jail would reveal them as its flush), then sent.
  await ok(["set", "sshd-test", "unbanip", "198.51.100.10"]);
  await feed.waitEvent("unban", "198.51.100.10");
  await ok(["set", "web-01", "unbanip", "2001:db8::10"]);
  await feed.waitEvent("unban", "2001:db8::10");

  // Two active bans (a manual banip, in fail2ban's spelling of IPv6 too) for the restart.
  await lab.fail("203.0.113.20", "sshd-test");
  await feed.waitEvent("ban", "203.0.113.20");
  await ok(["set", "web-01", "banip", "2001:DB8:0:0:0:0:0:20"]);
  await feed.waitEvent("ban", "2001:db8::20");

  // Restart: fail2ban logs an Unban for each active ban while stopping, then Restore Ban for each.
  const since = await lab.logSize();
  await lab.restart();
  await lab.waitLog(/\[sshd-test\] Unban 203\.0\.113\.20$/, DEADLINE_MS, since);
  await lab.waitLog(/\[web-01\] Restore Ban 2001:db8::20$/, DEADLINE_MS, since);
  await lab.waitLog(/\[sshd-test\] Restore Ban 203\.0\.113\.20$/, DEADLINE_MS, since);
  await waitFor(
    () =>
      monitor.metrics.get("log_lines_suppressed_total", { reason: "stop-flush" }) >= 2 &&
      monitor.metrics.get("log_lines_suppressed_total", { reason: "restore-ban" }) >= 2
        ? true
        : undefined,
    { timeoutMs: DEADLINE_MS, what: "the monitor to read the restart" },
  );
  // A new ban in each jail after the restart: a held unban of either jail would be sent before it.
  await lab.fail("203.0.113.30", "sshd-test");
  await feed.waitEvent("ban", "203.0.113.30");
  await lab.fail("203.0.113.31", "web-01");
  await feed.waitEvent("ban", "203.0.113.31");
  await waitFor(() => (monitor.outbox.size() === 0 ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "the outbox to drain",
  });

  t.deepEqual(feed.describe(), [
    "ban sshd-test 198.51.100.10",
    "ban web-01 2001:db8::10",
    "unban sshd-test 198.51.100.10",
    "unban web-01 2001:db8::10",
    "ban sshd-test 203.0.113.20",
    "ban web-01 2001:db8::20",
    "ban sshd-test 203.0.113.30",
    "ban web-01 203.0.113.31",
  ]);
  t.is(new Set(feed.events.map((e) => e.id)).size, feed.events.length);
  t.true(feed.events.every((e) => e.name === "web1"));
});

test("logrotate create on a real fail2ban (rename, new file, flushlogs) mid-stream loses nothing", async (t) => {
  t.timeout(30_000);
  const { lab, feed, monitor, ok } = await setup(t);
  await lab.fail("198.51.100.40", "sshd-test");
  await feed.waitEvent("ban", "198.51.100.40");

  // logrotate's `create`: the old file is renamed, an empty one takes its place, fail2ban still
  // writes to the old one until postrotate's flushlogs.
  await fs.rename(lab.paths.log, `${lab.paths.log}.1`);
  await fs.writeFile(lab.paths.log, "", { mode: 0o640 });
  await lab.fail("198.51.100.41", "sshd-test");
  await lab.waitBanned("sshd-test", "198.51.100.41");
  t.regex(await fs.readFile(`${lab.paths.log}.1`, "utf8"), /Ban 198\.51\.100\.41$/m, "still the old file");
  await ok(["flushlogs"]);
  await lab.fail("198.51.100.42", "web-01");
  await lab.waitLog(/\[web-01\] Ban 198\.51\.100\.42$/);

  await feed.waitEvent("ban", "198.51.100.42");
  await waitFor(() => (monitor.outbox.size() === 0 ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "the outbox to drain",
  });
  t.deepEqual(feed.describe(), [
    "ban sshd-test 198.51.100.40",
    "ban sshd-test 198.51.100.41",
    "ban web-01 198.51.100.42",
  ]);
  t.is(monitor.metrics.get("log_source_events_total", { event: "rotation" }), 1);
});
