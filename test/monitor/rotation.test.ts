import { copyFile, rename, truncate, unlink, writeFile } from "node:fs/promises";
import test from "ava";
import { waitFor } from "../harness/wait.js";
import { banLine, DEADLINE_MS, monitorLab } from "./helpers.js";

/**
 * Log rotation through the whole monitor (the tailer's own tests cover each mode line by line):
 * whatever the rotation, every ban reaches the publisher once. logrotate `create` with a real
 * fail2ban is in fail2ban.test.ts.
 */

const drained = (monitor: { outbox: { size(): number } }) =>
  waitFor(() => (monitor.outbox.size() === 0 ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "the outbox to drain",
  });

test("copytruncate mid-stream: the lines after the truncation are read from the start of the file", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  const { monitor } = await lab.startMonitor();
  await lab.append(banLine("sshd", "198.51.100.1"), banLine("sshd", "198.51.100.2"));
  await feed.waitCount(2);
  await copyFile(lab.logFile, `${lab.logFile}.1`);
  await truncate(lab.logFile, 0);
  await lab.append(banLine("sshd", "198.51.100.3"));
  await feed.waitCount(3);
  await drained(monitor);
  await lab.append(banLine("sshd", "198.51.100.4"));
  await feed.waitCount(4);
  t.deepEqual(
    feed.describe(),
    ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"].map((ip) => `ban sshd ${ip}`),
  );
});

test("rotated while the monitor was stopped: the rest of the old file, then the new one, nothing twice", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  const first = await lab.startMonitor();
  await lab.append(banLine("sshd", "198.51.100.1"));
  await feed.waitCount(1);
  await drained(first.monitor);
  await first.monitor.close();

  await lab.append(banLine("sshd", "198.51.100.2"));
  await rename(lab.logFile, `${lab.logFile}.1`);
  await writeFile(lab.logFile, banLine("sshd", "198.51.100.3"));
  const second = await lab.startMonitor();
  await feed.waitCount(3);
  await drained(second.monitor);
  await lab.append(banLine("sshd", "198.51.100.4"));
  await feed.waitCount(4);
  t.deepEqual(
    feed.describe(),
    ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"].map((ip) => `ban sshd ${ip}`),
  );
});

test("copytruncate while the monitor was stopped, refilled past its offset on a line boundary: read from the start", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  const first = await lab.startMonitor();
  await lab.append(banLine("sshd", "198.51.100.1"), banLine("sshd", "198.51.100.2"));
  await feed.waitCount(2);
  await drained(first.monitor);
  await first.monitor.close();

  // Lines of equal length: the saved offset (two lines) is a line boundary of the refilled file
  // too, which is larger; only its first bytes tell that it is another file.
  await copyFile(lab.logFile, `${lab.logFile}.1`);
  await writeFile(lab.logFile, ["3", "4", "5"].map((n) => banLine("sshd", `198.51.100.${n}`)).join(""));
  const second = await lab.startMonitor();
  await feed.waitCount(5);
  await drained(second.monitor);
  await lab.append(banLine("sshd", "198.51.100.6"));
  await feed.waitCount(6);
  t.deepEqual(
    feed.describe(),
    ["1", "2", "3", "4", "5", "6"].map((n) => `ban sshd 198.51.100.${n}`),
  );
});

test("a log deleted and created again (no rotation tool): the new file is read from its start", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  await lab.startMonitor();
  await lab.append(banLine("sshd", "198.51.100.1"));
  await feed.waitCount(1);
  await unlink(lab.logFile);
  await writeFile(lab.logFile, banLine("sshd", "198.51.100.2"));
  await feed.waitCount(2);
  t.deepEqual(feed.describe(), ["ban sshd 198.51.100.1", "ban sshd 198.51.100.2"]);
});
