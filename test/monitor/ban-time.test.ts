import anyTest from "ava";
import { parseConfig } from "../../src/config/load.js";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";
import { waitFor } from "../harness/wait.js";
import { banLine, DEADLINE_MS, monitorLab } from "./helpers.js";

anyTest("banTimeFrom is fail2ban unless the config says otherwise", (t) => {
  const yaml = (extra: string) =>
    `node: { name: web1, identity: /k/web1.key_secret }\nmonitor:\n  publishers: [{ submit: "tcp://127.0.0.1:5678", key: /k/pub1.key }]\n${extra}`;
  t.is(parseConfig(yaml(""), "/etc/f2bz/f2bz.yaml").monitor?.banTimeFrom, "fail2ban");
  t.is(parseConfig(yaml("  banTimeFrom: config\n"), "/etc/f2bz/f2bz.yaml").monitor?.banTimeFrom, "config");
});

/**
 * A ban's duration as the real fail2ban of the project's lab reports it for the jail (monitor
 * .banTimeFrom: fail2ban, the default), and the config when fail2ban cannot be asked.
 */
const test = ensureFail2ban(anyTest);

test("a jail's bantime of 1234 s is the event's duration, with no banTimes in the config", async (t) => {
  t.timeout(90_000);
  const lab = await startFail2ban({ jails: ["sshd-test"], bantime: 1234, label: "bt" });
  t.teardown(() => lab.cleanup());
  const cluster = await monitorLab(t, { logFile: lab.paths.log });
  const { feed } = await cluster.startPublisher();
  const { logs } = await cluster.startMonitor({ client: lab.paths.client, banTimeFrom: "fail2ban" });

  await lab.fail("198.51.100.31", "sshd-test");
  const event = await feed.waitEvent("ban", "198.51.100.31");
  t.is(event.expires - event.time, 1_234_000);
  t.is(logs.filter((l) => l.level === 40).length, 0);
});

test("fail2ban's permanent bantime (-1) becomes events.maxBanTime", async (t) => {
  t.timeout(90_000);
  const lab = await startFail2ban({ jails: ["sshd-test"], bantime: -1, label: "btp" });
  t.teardown(() => lab.cleanup());
  const cluster = await monitorLab(t, { logFile: lab.paths.log });
  const { feed } = await cluster.startPublisher();
  await cluster.startMonitor({ client: lab.paths.client, banTimeFrom: "fail2ban" }, { maxBanTime: "2d" });

  await lab.fail("198.51.100.32", "sshd-test");
  const event = await feed.waitEvent("ban", "198.51.100.32");
  t.is(event.expires - event.time, 2 * 86_400_000);
});

test("fail2ban unreachable: the config's banTimes, then banTime, with a warning naming the jail", async (t) => {
  t.timeout(90_000);
  // The lab's own client, bound to its socket, once the server is gone.
  const lab = await startFail2ban({ jails: ["sshd-test"], label: "btu" });
  t.teardown(() => lab.cleanup());
  await lab.stop();
  const cluster = await monitorLab(t);
  const { feed } = await cluster.startPublisher();
  const { logs } = await cluster.startMonitor({
    client: lab.paths.client,
    banTimeFrom: "fail2ban",
    banTime: "2h",
    banTimes: { recidive: "7d" },
  });

  await cluster.append(banLine("recidive", "198.51.100.33"), banLine("sshd", "198.51.100.34"));
  const recidive = await feed.waitEvent("ban", "198.51.100.33");
  const sshd = await feed.waitEvent("ban", "198.51.100.34");
  t.is(recidive.expires - recidive.time, 7 * 86_400_000);
  t.is(sshd.expires - sshd.time, 2 * 3_600_000);
  const warnings = await waitFor(
    () => {
      const w = logs.filter((l) => l.msg.startsWith("cannot ask fail2ban for the jail's bantime"));
      return w.length >= 2 ? w : undefined;
    },
    { timeoutMs: DEADLINE_MS, what: "two bantime warnings" },
  );
  t.deepEqual(warnings.map((w) => w.jail).sort(), ["recidive", "sshd"]);
});

test("banTimeFrom: config never asks fail2ban, even when it answers", async (t) => {
  t.timeout(90_000);
  const lab = await startFail2ban({ jails: ["sshd-test"], bantime: 1234, label: "btc" });
  t.teardown(() => lab.cleanup());
  const cluster = await monitorLab(t, { logFile: lab.paths.log });
  const { feed } = await cluster.startPublisher();
  await cluster.startMonitor({ client: lab.paths.client, banTimeFrom: "config", banTime: "3h" });

  await lab.fail("198.51.100.35", "sshd-test");
  const event = await feed.waitEvent("ban", "198.51.100.35");
  t.is(event.expires - event.time, 3 * 3_600_000);
});
