import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import anyTest, { type ExecutionContext } from "ava";
import { cachedIgnoreList } from "../../src/ban-helper/ignore-list.js";
import { BanHelperServer, type BanHelperServerOptions } from "../../src/ban-helper/server.js";
import { F2bzError } from "../../src/errors.js";
import { Fail2banClient } from "../../src/fail2ban/client.js";
import type { BanExecutor } from "../../src/fail2ban/executor.js";
import { BanHelperClient } from "../../src/fail2ban/helper-client.js";
import { BanQueue } from "../../src/fail2ban/queue.js";
import { NeverBanList } from "../../src/policy/never-ban.js";
import { ensureFail2ban, type Fail2banLab, startFail2ban } from "../harness/fail2ban.js";
import { counting, memoryLogger, openConnection, openDir, rawRequest } from "./helpers.js";

const test = ensureFail2ban(anyTest);

interface Setup {
  lab: Fail2banLab;
  helper: BanHelperServer;
  socket: string;
  dir: string;
  calls: () => number;
  lines: Record<string, unknown>[];
}

async function setup(t: ExecutionContext, options: Partial<BanHelperServerOptions> = {}): Promise<Setup> {
  const lab = await startFail2ban({ jails: ["f2bz", "web-01"] });
  t.teardown(() => lab.cleanup());
  const dir = await openDir(t, "f2bz-helper");
  const socket = path.join(dir, "ban.sock");
  const { executor, calls } = counting(new Fail2banClient({ client: lab.paths.client, timeoutMs: 10_000 }));
  const { logger, lines } = memoryLogger();
  const helper = await BanHelperServer.listen({
    socket,
    stateDir: path.join(dir, "state"),
    executor,
    jails: ["f2bz"],
    neverBan: NeverBanList.create({ entries: ["203.0.113.0/28"] }),
    logger,
    ...options,
  });
  t.teardown(() => helper.close());
  return { lab, helper, socket, dir, calls, lines };
}

test("BAN and UNBAN lines reach the real fail2ban; the socket is 0660", async (t) => {
  t.timeout(45_000);
  const { lab, socket, helper } = await setup(t);
  const stat = await fs.stat(socket);
  t.true(stat.isSocket());
  t.is(stat.mode & 0o777, 0o660);

  t.is(await rawRequest(socket, "BAN f2bz 192.0.2.5\n"), "OK 1\n");
  t.is(await rawRequest(socket, "BAN f2bz 192.0.2.5\n"), "OK 0\n", "already banned");
  const client = new BanHelperClient(socket, { timeoutMs: 15_000 });
  t.is(await client.ban("f2bz", ["192.0.2.1", "2001:DB8:0:0::1"]), 2);
  t.deepEqual((await lab.banned("f2bz")).sort(), ["192.0.2.1", "192.0.2.5", "2001:db8::1"]);
  t.regex(await lab.actions(), /^ban f2bz 2001:db8::1$/m);

  t.is(await client.unban("f2bz", ["192.0.2.1", "192.0.2.5"]), 2);
  await lab.waitUnbanned("f2bz", "192.0.2.5");
  t.deepEqual(await lab.banned("f2bz"), ["2001:db8::1"]);

  const refused = await t.throwsAsync(client.ban("f2bz", ["127.0.0.1"]), { instanceOf: F2bzError });
  t.is(refused.code, "FAIL2BAN_FAILED");
  t.regex(refused.message, /refused BAN f2bz \(1 addresses\): never-ban address '127\.0\.0\.1'$/);
  t.is(helper.metrics.get("helper_requests_total", { verb: "ban", result: "ok" }), 3);
  t.is(helper.metrics.get("helper_requests_refused_total", { reason: "never-ban" }), 1);
});

test("BAN refuses an address in the jail's own ignoreip, which banip would bypass", async (t) => {
  t.timeout(45_000);
  const lab = await startFail2ban({
    jails: ["f2bz"],
    ignoreip: ["198.51.100.0/24", "2001:db8:1::7/48"],
  });
  t.teardown(() => lab.cleanup());
  const dir = await openDir(t, "f2bz-helper");
  const socket = path.join(dir, "ban.sock");
  const client = new Fail2banClient({ client: lab.paths.client, timeoutMs: 10_000 });
  const { executor, calls } = counting(client);
  const { logger } = memoryLogger();
  const helper = await BanHelperServer.listen({
    socket,
    stateDir: path.join(dir, "state"),
    executor,
    ignoreList: cachedIgnoreList(client),
    jails: ["f2bz"],
    neverBan: NeverBanList.create({}),
    logger,
  });
  t.teardown(() => helper.close());
  t.is(await rawRequest(socket, "BAN f2bz 198.51.100.9\n"), "ERR ignoreip address '198.51.100.9'\n");
  t.is(
    await rawRequest(socket, "BAN f2bz 203.0.113.9 2001:db8:1:2::3\n"),
    "ERR ignoreip address '2001:db8:1:2::3'\n",
  );
  t.is(calls(), 0, "nothing reached fail2ban");
  t.deepEqual(await lab.banned("f2bz"), []);
  t.is(await rawRequest(socket, "BAN f2bz 203.0.113.9\n"), "OK 1\n");
  t.is(await rawRequest(socket, "UNBAN f2bz 203.0.113.9\n"), "OK 1\n");
  t.is(helper.metrics.get("helper_requests_refused_total", { reason: "ignoreip" }), 2);
});

test("a queue drives the helper: more than 100 addresses are split into lines", async (t) => {
  t.timeout(45_000);
  const { lab, socket, calls } = await setup(t);
  const queue = new BanQueue(new BanHelperClient(socket), { batchSize: 150 });
  const ips = Array.from({ length: 150 }, (_, i) => `198.51.100.${i + 1}`);
  for (const ip of ips) queue.ban("f2bz", ip);
  await queue.flush();
  t.is(queue.tally.failed, 0);
  t.is(calls(), 2, "one queue batch of 150 became two helper lines (100 + 50)");
  t.is((await lab.banned("f2bz")).length, 150);
});

test("malformed and forbidden requests are refused, and nothing reaches fail2ban", async (t) => {
  t.timeout(60_000);
  const { lab, socket, dir, calls, lines } = await setup(t);
  const marker = path.join(dir, "pwned");
  const before = {
    f2bz: await lab.banned("f2bz"),
    web: await lab.banned("web-01"),
    actions: await lab.actions(),
    log: await lab.logSize(),
  };
  const hundredOne = Array.from({ length: 101 }, (_, i) => `192.0.2.${i + 1}`).join(" ");
  const cases: [string | Buffer, RegExp][] = [
    ["BAN f2bz 192.0.2.1 extra words\n", /^ERR not an ip address 'extra'\n$/],
    [`BAN f2bz 192.0.2.1;touch ${marker}\n`, /^ERR not an ip address '192\.0\.2\.1;touch'\n$/],
    [`BAN f2bz 192.0.2.1;touch\t${marker}\n`, /^ERR not printable ascii\n$/],
    ["BAN f2bz $(id)\n", /^ERR not an ip address '\$\(id\)'\n$/],
    [`BAN f2bz \`touch ${marker}\`\n`, /^ERR not an ip address '`touch'\n$/],
    ["BAN f2bz 192.0.2.1|id\n", /^ERR not an ip address '192\.0\.2\.1\|id'\n$/],
    ["\n", /^ERR empty request\n$/],
    ["", /^ERR empty request\n$/],
    ["ban f2bz 192.0.2.1\n", /^ERR unknown verb 'ban'\n$/],
    ["BAN\tf2bz\t192.0.2.1\n", /^ERR not printable ascii\n$/],
    ["BAN f2bz 192.0.2.1\r\n", /^ERR not printable ascii\n$/],
    [Buffer.from("BAN f2bz 192.0.2.１\n", "utf8"), /^ERR not printable ascii\n$/],
    ["BAN  f2bz 192.0.2.1\n", /^ERR malformed request, expected single spaces\n$/],
    ["BAN web-01 192.0.2.1\n", /^ERR jail not allowed 'web-01'\n$/],
    ["BAN no-such-jail 192.0.2.1\n", /^ERR jail not allowed 'no-such-jail'\n$/],
    ["BAN -x 192.0.2.1\n", /^ERR invalid jail '-x'\n$/],
    ["BAN f2bz 999.1.1.1\n", /^ERR not an ip address '999\.1\.1\.1'\n$/],
    ["BAN f2bz 192.0.2.0/24\n", /^ERR cidr not allowed '192\.0\.2\.0\/24'\n$/],
    ["BAN f2bz 0.0.0.0/0\n", /^ERR cidr not allowed '0\.0\.0\.0\/0'\n$/],
    ["BAN f2bz 127.0.0.1\n", /^ERR never-ban address '127\.0\.0\.1'\n$/],
    ["BAN f2bz 192.0.2.9 203.0.113.3\n", /^ERR never-ban address '203\.0\.113\.3'\n$/],
    ["UNBAN f2bz ::1\n", /^ERR never-ban address '::1'\n$/],
    [`BAN f2bz ${hundredOne}\n`, /^ERR too many addresses, at most 100\n$/],
    [`BAN f2bz ${"1".repeat(5000)}\n`, /^ERR line too long\n$/],
    [`BAN f2bz ${"1".repeat(4100)}`, /^ERR line too long\n$/],
    [`BAN f2bz 192.0.2.1\nBAN f2bz 192.0.2.2\n`, /^ERR one request per connection\n$/],
    ["BAN f2bz 192.0.2.1", /^ERR missing newline\n$/],
  ];
  for (const [request, expected] of cases) {
    t.regex(await rawRequest(socket, request), expected, JSON.stringify(request.toString()).slice(0, 80));
  }
  t.is(calls(), 0, "no request reached fail2ban-client");
  t.deepEqual(await lab.banned("f2bz"), before.f2bz);
  t.deepEqual(await lab.banned("web-01"), before.web);
  t.is(await lab.actions(), before.actions);
  const log = (await fs.readFile(lab.paths.log)).subarray(before.log).toString();
  t.notRegex(log, /\] (Ban|Unban) /);
  t.false(existsSync(marker));
  // Refusals are logged with the reason only: the rest of the line never reaches the log.
  const refusals = lines.filter((l) => l.msg === "request refused");
  t.true(refusals.length > 0);
  t.false(JSON.stringify(lines).includes(marker));
});

anyTest(
  "a slow client holds only its own connection; beyond maxConnections the answer is busy",
  async (t) => {
    t.timeout(20_000);
    const dir = await openDir(t, "f2bz-helper");
    const socket = path.join(dir, "ban.sock");
    const executor: BanExecutor = {
      ban: async (_j, ips) => ips.length,
      unban: async (_j, ips) => ips.length,
    };
    const helper = await BanHelperServer.listen({
      socket,
      stateDir: path.join(dir, "state"),
      executor,
      jails: ["f2bz"],
      neverBan: NeverBanList.create({}),
      logger: memoryLogger().logger,
      requestTimeoutMs: 1_000,
      maxConnections: 3,
    });
    t.teardown(() => helper.close());
    const pending = new Set<string>(["slow1", "slow2"]);
    const slow1 = await openConnection(socket);
    slow1.socket.write("BAN f2bz 192.0.2"); // never finishes its line
    const slow2 = await openConnection(socket);
    for (const [name, c] of [
      ["slow1", slow1],
      ["slow2", slow2],
    ] as const)
      void c.reply.then(() => pending.delete(name));
    t.is(await rawRequest(socket, "BAN f2bz 192.0.2.77\n"), "OK 1\n");
    t.deepEqual([...pending], ["slow1", "slow2"], "answered while both slow clients were still waiting");
    const slow3 = await openConnection(socket);
    t.is(await rawRequest(socket, "BAN f2bz 192.0.2.78\n"), "ERR busy\n");
    t.is(await slow1.reply, "ERR timeout\n");
    t.is(await slow2.reply, "ERR timeout\n");
    t.is(await slow3.reply, "ERR timeout\n");
    t.is(await rawRequest(socket, "BAN f2bz 192.0.2.78\n"), "OK 1\n", "slots are free again");
    t.is(helper.metrics.get("helper_requests_refused_total", { reason: "busy" }), 1);
    t.is(helper.metrics.get("helper_requests_refused_total", { reason: "timeout" }), 3);
  },
);

anyTest(
  "the socket path: a stale socket is replaced; a file or a live socket is refused; close removes it",
  async (t) => {
    t.timeout(20_000);
    const dir = await openDir(t, "f2bz-helper");
    const socket = path.join(dir, "ban.sock");
    const executor: BanExecutor = {
      ban: async (_j, ips) => ips.length,
      unban: async (_j, ips) => ips.length,
    };
    const base = {
      socket,
      stateDir: path.join(dir, "state"),
      executor,
      jails: ["f2bz"],
      neverBan: NeverBanList.create({}),
      logger: memoryLogger().logger,
    };

    // A socket file left by a process that died without unlinking it.
    await promisify(execFile)("python3", [
      "-c",
      "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])",
      socket,
    ]);
    t.true((await fs.lstat(socket)).isSocket());
    const helper = await BanHelperServer.listen(base);
    t.is(await rawRequest(socket, "BAN f2bz 192.0.2.1\n"), "OK 1\n");

    const live = await t.throwsAsync(BanHelperServer.listen(base), { instanceOf: F2bzError });
    t.is(live.code, "BIND_FAILED");
    t.regex(live.message, /^another process listens on '.*ban\.sock'$/);
    t.is(await rawRequest(socket, "UNBAN f2bz 192.0.2.1\n"), "OK 1\n", "the first helper still serves");

    await helper.close();
    await helper.close();
    t.false(existsSync(socket));

    await fs.writeFile(socket, "not a socket");
    const file = await t.throwsAsync(BanHelperServer.listen(base), { instanceOf: F2bzError });
    t.is(file.code, "BIND_FAILED");
    t.regex(file.message, /exists and is not a socket; not removing it$/);
    t.is(await fs.readFile(socket, "utf8"), "not a socket");
  },
);

anyTest("close drops idle connections and waits for the call in flight", async (t) => {
  t.timeout(20_000);
  const dir = await openDir(t, "f2bz-helper");
  const socket = path.join(dir, "ban.sock");
  let finish: (n: number) => void = () => {};
  let called!: () => void;
  const inFlight = new Promise<void>((resolve) => {
    called = resolve;
  });
  const executor: BanExecutor = {
    ban: () =>
      new Promise<number>((resolve) => {
        finish = resolve;
        called();
      }),
    unban: async () => 0,
  };
  const helper = await BanHelperServer.listen({
    socket,
    stateDir: path.join(dir, "state"),
    executor,
    jails: ["f2bz"],
    neverBan: NeverBanList.create({}),
    logger: memoryLogger().logger,
  });
  t.teardown(() => helper.close());
  const idle = await openConnection(socket);
  const answer = rawRequest(socket, "BAN f2bz 192.0.2.1\n");
  await inFlight;
  let closed = false;
  const closing = helper.close().then(() => {
    closed = true;
  });
  t.is(await idle.reply, "", "an idle connection is dropped at close");
  t.false(closed, "close waits for the call in flight");
  finish(1);
  t.is(await answer, "OK 1\n");
  await closing;
  t.false(existsSync(socket));
});
