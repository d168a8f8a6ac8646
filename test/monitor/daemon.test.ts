import { existsSync, readFileSync } from "node:fs";
import { appendFile, rename } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import { keyHex } from "../../src/keys/store.js";
import { Outbox } from "../../src/monitor/outbox.js";
import { waitFor } from "../harness/wait.js";
import { spawnDaemon } from "../helpers/cli.js";
import {
  banLine,
  cliMonitorConfig,
  DEADLINE_MS,
  type LogLine,
  type MonitorLab,
  monitorLab,
} from "./helpers.js";

/**
 * `f2bz monitor` as an operator runs it: the built CLI in the foreground, JSON logs, signals.
 * `npm test` builds dist/ first; run `npm run build` after changing src/ before running this alone.
 */

/** The monitor's state file, opened as the monitor would with its one configured publisher. */
const publisherName = (lab: MonitorLab) => keyHex(lab.publisherNode.identity.curvePublic);
const openOutbox = (lab: MonitorLab) =>
  new Outbox(lab.monitorNode.stateDir, [{ name: publisherName(lab), endpoint: lab.submit }]);

test("f2bz monitor logs JSON, exits 0 on SIGTERM with the outbox intact, and delivers it after a restart", async (t) => {
  t.timeout(40_000);
  const lab = await monitorLab(t);
  const config = await cliMonitorConfig(lab);

  const first = spawnDaemon(t, ["monitor", "--config", config]);
  await first.waitLog("monitor started");
  await lab.append(banLine("sshd", "198.51.100.1"), banLine("sshd", "198.51.100.2"));
  const queued = await first.waitLog("event queued", 2);
  first.child.kill("SIGTERM");
  t.deepEqual(await first.exited, { code: 0, signal: null });
  t.is(first.stderr(), "");
  t.deepEqual(
    first
      .stdout()
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("{")),
    [],
    "every line is JSON",
  );
  t.true(first.lines.every((l) => typeof l.level === "number" && l.name === "monitor" && l.node === "web1"));
  const messages = first.lines.map((l) => l.msg);
  t.true(messages.indexOf("monitor stopping") < messages.indexOf("monitor stopped"));
  t.is(messages.at(-1), "monitor stopped");

  // What the outbox holds on disk after the stop: both events, and the position after their lines.
  const outbox = openOutbox(lab);
  t.is(outbox.size(), 2);
  t.is(outbox.nextFor(publisherName(lab))?.id, queued[0]!.id);
  const logSize = readFileSync(lab.logFile).length;
  t.like(outbox.position("file"), { offset: logSize });
  outbox.close();

  const { feed } = await lab.startPublisher();
  const second = spawnDaemon(t, ["monitor", "--config", config]);
  await second.waitLog("monitor started");
  await lab.append(banLine("sshd", "198.51.100.3"));
  await feed.waitCount(3);
  await waitFor(
    () => (second.lines.filter((l) => l.msg === "event queued").length === 1 ? true : undefined),
    {
      timeoutMs: DEADLINE_MS,
      what: "the new line queued",
    },
  );
  second.child.kill("SIGINT");
  t.deepEqual(await second.exited, { code: 0, signal: null });
  t.deepEqual(feed.describe(), ["ban sshd 198.51.100.1", "ban sshd 198.51.100.2", "ban sshd 198.51.100.3"]);
  t.deepEqual(
    feed.events.slice(0, 2).map((e) => e.id),
    queued.map((l) => l.id),
    "the events stored by the first run, resent as they were",
  );
  const after = openOutbox(lab);
  t.teardown(() => after.close());
  t.is(after.size(), 0);
});

test("killed with SIGKILL mid-stream, the monitor resumes without loss or duplicate", async (t) => {
  t.timeout(40_000);
  const lab = await monitorLab(t);
  const config = await cliMonitorConfig(lab);
  const { feed } = await lab.startPublisher();
  const ips = Array.from({ length: 12 }, (_, i) => `203.0.113.${i + 1}`);

  const first = spawnDaemon(t, ["monitor", "--config", config]);
  await first.waitLog("monitor started");
  await lab.append(...ips.slice(0, 4).map((ip) => banLine("web", ip)));
  await feed.waitCount(2);
  // Killed while lines are still being written and delivered: no chance to save anything.
  const writing = (async () => {
    for (const ip of ips.slice(4, 8)) await appendFile(lab.logFile, banLine("web", ip));
  })();
  first.child.kill("SIGKILL");
  t.is((await first.exited).signal, "SIGKILL");
  await writing;

  const second = spawnDaemon(t, ["monitor", "--config", config]);
  await second.waitLog("monitor started");
  await lab.append(...ips.slice(8).map((ip) => banLine("web", ip)));
  await feed.waitCount(ips.length);
  await lab.append(banLine("web", "203.0.113.99"));
  await feed.waitEvent("ban", "203.0.113.99");
  t.deepEqual(
    feed.describe(),
    [...ips, "203.0.113.99"].map((ip) => `ban web ${ip}`),
  );
  t.is(new Set(feed.events.map((e) => e.id)).size, feed.events.length);
  second.child.kill("SIGTERM");
  t.is((await second.exited).code, 0);
});

test("SIGHUP reopens logging.file: after a rename, new lines go to a new file at the path", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const logFile = path.join(lab.cluster.dir, "log", "monitor.log");
  const config = await cliMonitorConfig(lab, {}, { logging: { level: "info", file: logFile } });
  const daemon = spawnDaemon(t, ["monitor", "--config", config]);
  const fileLines = (file: string): LogLine[] =>
    existsSync(file)
      ? readFileSync(file, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as LogLine)
      : [];
  const waitFile = (file: string, msg: string) =>
    waitFor(() => fileLines(file).find((l) => l.msg === msg), {
      timeoutMs: DEADLINE_MS,
      what: `'${msg}' in ${file} (stderr: ${daemon.stderr().slice(-300)})`,
    });

  await waitFile(logFile, "monitor started");
  await rename(logFile, `${logFile}.1`);
  daemon.child.kill("SIGHUP");
  await waitFile(logFile, "log file reopened");
  await lab.append(banLine("sshd", "198.51.100.7"));
  const queued = await waitFile(logFile, "event queued");
  t.is(queued.ip, "198.51.100.7");
  daemon.child.kill("SIGTERM");
  t.deepEqual(await daemon.exited, { code: 0, signal: null });

  const rotated = fileLines(`${logFile}.1`).map((l) => l.msg);
  t.true(rotated.includes("monitor started"));
  t.false(rotated.includes("event queued"), "nothing written to the renamed file after SIGHUP");
  t.is(fileLines(logFile).at(-1)?.msg, "monitor stopped");
  t.is(daemon.stdout(), "", "with a log file, nothing on stdout");
  t.is(daemon.stderr(), "");
});
