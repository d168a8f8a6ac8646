import { promises as fs } from "node:fs";
import path from "node:path";
import anyTest, { type ExecutionContext } from "ava";
import { F2bzError } from "../../src/errors.js";
import { Fail2banClient } from "../../src/fail2ban/client.js";
import { ensureFail2ban, type Fail2banLab, startFail2ban } from "../harness/fail2ban.js";
import { tempDir } from "../helpers/temp-dir.js";

const test = ensureFail2ban(anyTest);

async function lab(
  t: ExecutionContext,
  options: Parameters<typeof startFail2ban>[0] = {},
): Promise<Fail2banLab> {
  const started = await startFail2ban({ jails: ["f2bz", "web-01"], ...options });
  t.teardown(() => started.cleanup());
  return started;
}

/** A client script that records each call's argv in `calls` before running the lab's client. */
async function recordingClient(t: ExecutionContext, target: string, preamble = "") {
  const dir = await tempDir(t, "f2bz-client-");
  const calls = path.join(dir, "calls");
  const script = path.join(dir, "fail2ban-client");
  await fs.writeFile(script, `#!/bin/sh\n${preamble}echo "$*" >> ${calls}\nexec ${target} "$@"\n`, {
    mode: 0o755,
  });
  return {
    script,
    calls: async () => (await fs.readFile(calls, "utf8").catch(() => "")).trim().split("\n").filter(Boolean),
  };
}

const addresses = (n: number, prefix = "198.51.100") =>
  Array.from({ length: n }, (_, i) => (i < 250 ? `${prefix}.${i + 1}` : `2001:db8::${(i + 1).toString(16)}`));

test("version, jails, ignoreip and a ban against a real server", async (t) => {
  t.timeout(45_000);
  const f2b = await lab(t, { ignoreip: ["192.0.2.0/24", "10.1.2.3", "2001:db8:ffff::/48"] });
  const client = new Fail2banClient({ client: f2b.paths.client });

  const version = await client.version();
  t.is(version.text, (await f2b.client(["version"])).stdout.trim());
  t.regex(version.text, /^\d+\.\d+\.\d+$/);
  t.true(version.supportsMultiIp);

  t.deepEqual((await client.jails()).sort(), ["f2bz", "web-01"]);
  t.deepEqual((await client.ignoreIp("f2bz")).sort(), ["10.1.2.3", "192.0.2.0/24", "2001:db8:ffff::/48"]);
  for (const entry of ["192.0.2.0/24", "10.1.2.3", "2001:db8:ffff::/48"]) {
    t.is((await f2b.client(["set", "web-01", "delignoreip", entry])).code, 0);
  }
  t.deepEqual(await client.ignoreIp("web-01"), []);

  t.deepEqual(await f2b.banned("f2bz"), []);
  t.is(await client.ban("f2bz", ["203.0.113.1"]), 1);
  t.deepEqual(await f2b.banned("f2bz"), ["203.0.113.1"]);

  // The real client with leading arguments instead of the lab's wrapper script.
  const direct = new Fail2banClient({
    client: f2b.paths.realClient,
    args: ["-c", f2b.paths.etc, "-s", f2b.paths.socket],
  });
  t.deepEqual(await direct.banned("f2bz"), ["203.0.113.1"]);
});

test("bans and unbans go out in batches and show in `get <jail> banned`", async (t) => {
  t.timeout(45_000);
  const f2b = await lab(t);
  const recording = await recordingClient(t, f2b.paths.client);
  const client = new Fail2banClient({ client: recording.script, batchSize: 100 });
  const ips = addresses(260); // 250 IPv4 and 10 IPv6

  t.is(await client.ban("f2bz", ips), 260);
  t.deepEqual((await f2b.banned("f2bz")).sort(), [...ips].sort());
  const banCalls = (await recording.calls()).filter((c) => c.includes(" banip "));
  t.deepEqual(
    banCalls.map((c) => c.split(" ").length - 3),
    [100, 100, 60],
    "three calls of at most 100 addresses",
  );

  t.is(await client.ban("f2bz", ips.slice(0, 3)), 0, "already banned counts 0");
  // Not canonical on the way in, canonical on the way to fail2ban.
  t.is(await client.unban("f2bz", ["2001:DB8:0:0::FB", "198.51.100.1", "198.51.100.2"]), 3);
  t.regex(
    (await recording.calls()).at(-1)!,
    /^set f2bz unbanip 2001:db8::fb 198\.51\.100\.1 198\.51\.100\.2$/,
  );
  t.false((await f2b.banned("f2bz")).includes("198.51.100.1"));
  t.is(await client.unban("f2bz", ips), 257);
  t.deepEqual(await f2b.banned("f2bz"), []);
  t.regex(await f2b.actions(), /^unban f2bz 2001:db8::104$/m);
});

test("fail2ban errors become FAIL2BAN_FAILED with fail2ban's own message", async (t) => {
  t.timeout(45_000);
  const f2b = await lab(t);
  const client = new Fail2banClient({ client: f2b.paths.client });
  const error = await t.throwsAsync(client.ban("no-such-jail", ["192.0.2.1"]), { instanceOf: F2bzError });
  t.is(error.code, "FAIL2BAN_FAILED");
  t.is(
    error.message,
    "fail2ban-client set no-such-jail banip … exited with 255: 'Sorry but the jail \\'no-such-jail\\' does not exist'",
  );
  const jails = await t.throwsAsync(client.ignoreIp("no-such-jail"), { instanceOf: F2bzError });
  t.is(jails.code, "FAIL2BAN_FAILED");

  await f2b.stop();
  const clientVersion = (await f2b.client(["-V"])).stdout.trim();
  t.is((await client.version()).text, clientVersion, "without a server, the client's own version (-V)");
  const down = await t.throwsAsync(client.jails(), { instanceOf: F2bzError });
  t.is(down.code, "FAIL2BAN_FAILED");
  t.regex(
    down.message,
    /^fail2ban-client status exited with 255: 'Failed to access socket path: .*Is fail2ban running\?'$/,
  );
});

test("what is not an address or a jail name never reaches fail2ban-client", async (t) => {
  t.timeout(30_000);
  const f2b = await lab(t);
  const recording = await recordingClient(t, f2b.paths.client);
  const client = new Fail2banClient({ client: recording.script, multiIp: true });
  const bad: [string, string[]][] = [
    ["f2bz", ["--report-absent"]],
    ["f2bz", ["1.2.3.4;touch /tmp/x"]],
    ["f2bz", ["0.0.0.0/0"]],
    ["f2bz", ["192.0.2.1 192.0.2.2"]],
    ["f2bz", ["not-an-ip"]],
    ["f2bz", ["192.0.2.1", ""]],
    ["-x", ["192.0.2.1"]],
    ["f2bz extra", ["192.0.2.1"]],
  ];
  for (const [jail, ips] of bad) {
    const error = await t.throwsAsync(client.ban(jail, ips), { instanceOf: F2bzError });
    t.is(error.code, "MESSAGE_REJECTED", `${jail} ${ips.join(",")}`);
  }
  t.deepEqual(await recording.calls(), []);
  t.is(await client.ban("f2bz", []), 0);
  t.deepEqual(await recording.calls(), [], "an empty batch runs nothing");
});

test("a client older than 0.10.5 gets one address per call", async (t) => {
  t.timeout(30_000);
  const f2b = await lab(t);
  const recording = await recordingClient(
    t,
    f2b.paths.client,
    'if [ "$1" = version ]; then echo 0.10.4; exit 0; fi\n',
  );
  const client = new Fail2banClient({ client: recording.script });
  const version = await client.version();
  t.deepEqual([version.text, version.supportsMultiIp], ["0.10.4", false]);
  t.is(await client.ban("web-01", ["192.0.2.1", "192.0.2.2", "192.0.2.3"]), 3);
  t.deepEqual(await recording.calls(), [
    "set web-01 banip 192.0.2.1",
    "set web-01 banip 192.0.2.2",
    "set web-01 banip 192.0.2.3",
  ]);
});

anyTest("a hung client is killed at the timeout; a relative path is refused", async (t) => {
  t.timeout(10_000);
  const dir = await tempDir(t, "f2bz-client-");
  const script = path.join(dir, "fail2ban-client");
  const pidFile = path.join(dir, "pid");
  await fs.writeFile(script, `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 30\n`, { mode: 0o755 });
  const client = new Fail2banClient({ client: script, timeoutMs: 300, multiIp: true });
  const error = await t.throwsAsync(client.ban("f2bz", ["192.0.2.1"]), { instanceOf: F2bzError });
  t.is(error.code, "FAIL2BAN_FAILED");
  t.is(error.message, "fail2ban-client set f2bz banip … did not finish within 300 ms (killed)");
  // Killed, not left behind: the call settles once the child has exited (and been reaped).
  const pid = Number(await fs.readFile(pidFile, "utf8"));
  t.throws(() => process.kill(pid, 0), { code: "ESRCH" }, `sleep (pid ${pid}) still runs`);

  const missing = await t.throwsAsync(new Fail2banClient({ client: path.join(dir, "absent") }).jails());
  t.regex(missing.message, /^cannot run '.*absent': ENOENT$/);
  t.throws(() => new Fail2banClient({ client: "fail2ban-client" }), { message: /is not absolute/ });
});
