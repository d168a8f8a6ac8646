import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import anyTest from "ava";
import { asRoot } from "../helpers/skip.js";
import { ensureFail2ban, startFail2ban } from "./fail2ban.js";
import { createTestUser, runNodeAs } from "./users.js";

const test = ensureFail2ban(anyTest);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

test("a lab bans by filter and by banip, unbans, and restores bans after stop, restart and kill -9", async (t) => {
  t.timeout(60_000);
  const lab = await startFail2ban({ jails: ["sshd-test", "web-01"] });
  t.teardown(() => lab.cleanup());
  t.true(lab.paths.socket.length <= 100);

  await lab.fail("192.0.2.10", "sshd-test");
  await lab.waitBanned("sshd-test", "192.0.2.10");
  t.regex(
    await lab.waitLog(/NOTICE +\[sshd-test\] Ban 192\.0\.2\.10$/),
    /^\d{4}-\d\d-\d\d [\d:,]+ fail2ban\.actions +\[\d+\]: NOTICE/,
  );

  const ban = await lab.client(["set", "web-01", "banip", "198.51.100.1", "2001:DB8:0:0::1"]);
  t.deepEqual([ban.code, ban.stdout.trim()], [0, "2"]);
  t.deepEqual((await lab.banned("web-01")).sort(), ["198.51.100.1", "2001:db8::1"]);
  t.regex(await lab.actions(), /^ban web-01 2001:db8::1$/m);

  const unban = await lab.client(["set", "web-01", "unbanip", "198.51.100.1"]);
  t.deepEqual([unban.code, unban.stdout.trim()], [0, "1"]);
  await lab.waitUnbanned("web-01", "198.51.100.1");
  t.regex(await lab.actions(), /^unban web-01 198\.51\.100\.1$/m);

  // The wrapper reaches this lab from a plain command line.
  const wrapped = await promisify(execFile)(lab.paths.client, ["get", "sshd-test", "banned", "192.0.2.10"]);
  t.is(wrapped.stdout.trim(), "1");

  const firstPid = await lab.pid();
  t.truthy(firstPid);
  let since = await lab.logSize();
  await lab.stop();
  await lab.stop(); // idempotent
  t.is(await lab.pid(), undefined);
  t.false(existsSync(lab.paths.socket));
  t.regex(await lab.waitLog(/\[sshd-test\] Unban 192\.0\.2\.10$/, 5_000, since), /NOTICE/);
  t.is((await lab.client(["ping"])).code, 255);

  since = await lab.logSize();
  await lab.restart();
  await lab.waitLog(/NOTICE +\[sshd-test\] Restore Ban 192\.0\.2\.10$/, 15_000, since);
  await lab.waitLog(/NOTICE +\[web-01\] Restore Ban 2001:db8::1$/, 15_000, since);
  const secondPid = await lab.pid();
  t.truthy(secondPid);
  t.not(secondPid, firstPid);

  // A killed server leaves a stale socket; the next start removes it and restores the bans again.
  process.kill(secondPid!, "SIGKILL");
  since = await lab.logSize();
  await lab.restart();
  await lab.waitLog(/Restore Ban 192\.0\.2\.10$/, 15_000, since);
  t.deepEqual(await lab.banned("sshd-test"), ["192.0.2.10"]);
});

test("two labs side by side are independent", async (t) => {
  t.timeout(45_000);
  const [a, b] = await Promise.all([
    startFail2ban({ jails: ["web-01"], label: "a" }),
    startFail2ban({ jails: ["web-01"], label: "b" }),
  ]);
  t.teardown(() => a.cleanup());
  t.teardown(() => b.cleanup());
  t.not(a.paths.socket, b.paths.socket);

  t.is((await b.client(["set", "web-01", "banip", "203.0.113.9"])).stdout.trim(), "1");
  await a.fail("203.0.113.10", "web-01");
  await a.waitBanned("web-01", "203.0.113.10");
  t.deepEqual(await a.banned("web-01"), ["203.0.113.10"]);
  t.deepEqual(await b.banned("web-01"), ["203.0.113.9"]);

  await b.stop();
  t.is((await a.client(["ping"])).code, 0, "stopping B leaves A running");
});

asRoot(test, "the lab run as an unprivileged user")(
  "the lab runs entirely as an unprivileged user (needs root to create one)",
  async (t) => {
    t.timeout(60_000);
    const user = await createTestUser("f2bz-harness");
    t.teardown(() => user.remove());
    const fixture = path.join(root, "test/harness/fixtures/lab-as-user.ts");
    const result = await runNodeAs(user, fixture, [], { cwd: root, timeoutMs: 50_000 });
    t.is(result.code, 0, result.stderr);
    t.deepEqual(JSON.parse(result.stdout), {
      uid: user.uid,
      serverUid: user.uid,
      ban: "1",
      banned: ["192.0.2.77", "198.51.100.77"],
    });
  },
);
