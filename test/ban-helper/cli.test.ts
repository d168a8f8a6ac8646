import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import anyTest, { type ExecutionContext } from "ava";
import { BanHelperClient } from "../../src/fail2ban/helper-client.js";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";
import { isRoot } from "../harness/users.js";
import { waitFor } from "../harness/wait.js";
import { CLI, ensureBuilt, runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp-dir.js";
import { openDir, rawRequest } from "./helpers.js";

const test = ensureFail2ban(anyTest);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const ACTIVATE = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o660)
s.listen(16)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)  # sockets are created close-on-exec, and dup2(3, 3) does not clear it
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
`;

interface Cli {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** The built CLI, spawned as a user (or systemd) would; killed at teardown if still running. */
function spawnCli(t: ExecutionContext, args: string[], activate?: string): Cli {
  ensureBuilt();
  const env = { ...process.env };
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  // As systemd does for a socket unit: listen first, hand the socket over as fd 3 with
  // LISTEN_FDS=1 and LISTEN_PID set to the pid that then execs the service (same pid).
  const [file, argv] = activate
    ? ["python3", ["-c", ACTIVATE, activate, process.execPath, CLI, ...args]]
    : [process.execPath, [CLI, ...args]];
  const child = spawn(file, argv, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return { child, stdout: () => out, stderr: () => err, exit };
}

/** Waits for the "started" log line; fails at once, with its stderr, if the process exits first. */
function started(cli: Cli): Promise<unknown> {
  return Promise.race([
    waitFor(() => (cli.stdout().includes('"msg":"ban-helper started"') ? true : undefined), {
      timeoutMs: 20_000,
      what: "the ban-helper to start",
    }),
    cli.exit.then((code) => {
      throw new Error(`the ban-helper exited with ${code} before it started: ${cli.stderr()}`);
    }),
  ]);
}

test("`f2bz ban-helper` from the built CLI bans and unbans in a real fail2ban and stops cleanly", async (t) => {
  t.timeout(60_000);
  const lab = await startFail2ban({ jails: ["f2bz", "web-01"] });
  t.teardown(() => lab.cleanup());
  const dir = await openDir(t, "f2bz-cli");
  const socket = path.join(dir, "ban.sock");
  const config = path.join(dir, "f2bz.yaml");
  await fs.writeFile(
    config,
    [
      "node:",
      "  name: cli-test",
      "  identity: keys/cli-test.key_secret # not read by the ban-helper",
      "banHelper:",
      `  socket: ${socket}`,
      `  client: ${lab.paths.client}`,
      ...(isRoot() ? ["  group: root"] : []),
      "  jails: [f2bz]",
      `  stateDir: ${path.join(path.dirname(socket), "state")}`,
      "  neverBan: [203.0.113.0/28]",
      "  timeout: 10s",
      "logging:",
      "  level: info",
      "",
    ].join("\n"),
  );
  const cli = spawnCli(t, ["ban-helper", "--config", config]);
  await started(cli);
  const stat = await fs.stat(socket);
  t.is(stat.mode & 0o777, 0o660);
  if (isRoot()) t.is(stat.gid, 0);

  const client = new BanHelperClient(socket);
  t.is(await client.ban("f2bz", ["192.0.2.61", "2001:db8::61"]), 2);
  t.deepEqual((await lab.banned("f2bz")).sort(), ["192.0.2.61", "2001:db8::61"]);
  t.is(await client.unban("f2bz", ["192.0.2.61"]), 1);
  await lab.waitUnbanned("f2bz", "192.0.2.61");
  const actions = await lab.actions();
  t.is(await rawRequest(socket, "BAN web-01 192.0.2.62\n"), "ERR jail not allowed 'web-01'\n");
  t.is(await rawRequest(socket, "BAN f2bz 203.0.113.2\n"), "ERR never-ban address '203.0.113.2'\n");
  t.is(await rawRequest(socket, "BAN f2bz $(touch /tmp/x)\n"), "ERR not an ip address '$(touch'\n");
  t.deepEqual(await lab.banned("f2bz"), ["2001:db8::61"]);
  t.deepEqual(await lab.banned("web-01"), []);
  t.is(await lab.actions(), actions);

  cli.child.kill("SIGTERM");
  t.is(await cli.exit, 0, cli.stderr());
  t.false(existsSync(socket), "the socket file is removed at stop");
  const lines = cli
    .stdout()
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { msg: string; reason?: string });
  t.true(lines.some((l) => l.msg === "request refused" && l.reason === "jail not allowed 'web-01'"));
  t.is(lines.at(-1)?.msg, "ban-helper stopped");
});

test("`f2bz ban-helper` under socket activation serves the inherited socket and leaves it in place", async (t) => {
  t.timeout(60_000);
  const lab = await startFail2ban({ jails: ["f2bz"] });
  t.teardown(() => lab.cleanup());
  const dir = await openDir(t, "f2bz-cli");
  const socket = path.join(dir, "ban.sock");
  const config = path.join(dir, "f2bz.yaml");
  await fs.writeFile(
    config,
    [
      "node: { name: cli-test, identity: keys/cli-test.key_secret }",
      `banHelper: { socket: ${socket}, client: ${lab.paths.client}, jails: [f2bz], stateDir: ${path.join(dir, "state")}, group: no-such-group }`,
      "",
    ].join("\n"),
  );
  const cli = spawnCli(t, ["ban-helper", "--config", config], socket);
  await started(cli);
  t.true(cli.stdout().includes('"msg":"listening on the socket systemd passed"'));
  t.is(await new BanHelperClient(socket).ban("f2bz", ["192.0.2.71"]), 1);
  t.deepEqual(await lab.banned("f2bz"), ["192.0.2.71"]);
  cli.child.kill("SIGTERM");
  t.is(await cli.exit, 0, cli.stderr());
  t.true((await fs.lstat(socket)).isSocket(), "the socket belongs to systemd: not removed");
});

anyTest("`f2bz ban-helper` without a banHelper section exits 78 before opening anything", async (t) => {
  t.timeout(20_000);
  const dir = await tempDir(t, "f2bz-cli-");
  const config = path.join(dir, "f2bz.yaml");
  await fs.writeFile(config, "node:\n  name: cli-test\n  identity: keys/cli-test.key_secret\n");
  const result = await runCli(["ban-helper", "--config", config], { timeoutMs: 15_000 });
  t.is(result.code, 78);
  t.is(result.stderr.trim(), `f2bz ban-helper: config '${config}' has no 'banHelper' section`);
});

/**
 * DESIGN §10: the only privileged process carries no network code. The CLI loads the network
 * commands' modules only when they run, so the zeromq addon (libzmq) never enters the root process.
 */
anyTest("the running ban-helper process has not loaded zeromq", async (t) => {
  t.timeout(30_000);
  const dir = await tempDir(t, "f2bz-cli-");
  const config = path.join(dir, "f2bz.yaml");
  await fs.writeFile(
    config,
    `node: { name: cli-test, identity: keys/cli-test.key_secret }\nbanHelper: { socket: ${dir}/ban.sock, jails: [f2bz], stateDir: ${dir}/state }\n`,
  );
  const cli = spawnCli(t, ["ban-helper", "--config", config]);
  await started(cli);
  const maps = await fs.readFile(`/proc/${cli.child.pid}/maps`, "utf8");
  cli.child.kill("SIGTERM");
  t.is(await cli.exit, 0);
  t.false(/zeromq|libzmq/.test(maps), "zeromq is mapped into the root process");
});
