import { promises as fs } from "node:fs";
import path from "node:path";
import anyTest from "ava";
import { HELPER_LEDGER_FILE } from "../../src/ban-helper/ledger.js";
import { BanHelperServer } from "../../src/ban-helper/server.js";
import { F2bzError } from "../../src/errors.js";
import { Fail2banClient } from "../../src/fail2ban/client.js";
import { NeverBanList } from "../../src/policy/never-ban.js";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";
import { counting, memoryLogger, openDir, rawRequest } from "./helpers.js";

const test = ensureFail2ban(anyTest);

test("UNBAN lifts only what the helper banned: fail2ban's own bans in an allowed jail stay", async (t) => {
  t.timeout(90_000);
  const lab = await startFail2ban({ jails: ["sshd"] });
  t.teardown(() => lab.cleanup());
  const dir = await openDir(t, "f2bz-helper");
  const socket = path.join(dir, "ban.sock");
  const stateDir = path.join(dir, "state");
  const client = new Fail2banClient({ client: lab.paths.client, timeoutMs: 15_000 });
  const { executor, calls } = counting(client);
  const options = {
    socket,
    stateDir,
    executor,
    banned: (jail: string) => client.banned(jail),
    jails: ["sshd"],
    neverBan: NeverBanList.create({}),
    logger: memoryLogger().logger,
  };
  let helper = await BanHelperServer.listen(options);
  t.teardown(() => helper.close());

  // fail2ban bans 192.0.2.30 on its own, from its filter.
  await lab.fail("192.0.2.30", "sshd");
  await lab.waitBanned("sshd", "192.0.2.30");
  t.is(await rawRequest(socket, "UNBAN sshd 192.0.2.30\n"), "ERR not banned by the helper '192.0.2.30'\n");
  t.is(calls(), 0, "nothing reached fail2ban");
  // Banning it through the helper changes nothing fail2ban holds, so it does not make it the helper's.
  t.is(await rawRequest(socket, "BAN sshd 192.0.2.30\n"), "OK 0\n");
  t.is(await rawRequest(socket, "UNBAN sshd 192.0.2.30\n"), "ERR not banned by the helper '192.0.2.30'\n");

  t.is(await rawRequest(socket, "BAN sshd 192.0.2.31 192.0.2.32\n"), "OK 2\n");
  t.is(
    await rawRequest(socket, "UNBAN sshd 192.0.2.30 192.0.2.31\n"),
    "ERR not banned by the helper '192.0.2.30', 1 lifted\n",
  );
  await lab.waitUnbanned("sshd", "192.0.2.31");
  t.is(await rawRequest(socket, "UNBAN sshd 192.0.2.31\n"), "ERR not banned by the helper '192.0.2.31'\n");
  t.is(helper.metrics.get("helper_requests_refused_total", { reason: "not-held" }), 4);

  // The ledger is on disk: a restarted helper still lifts what it banned before.
  await helper.close();
  helper = await BanHelperServer.listen(options);
  t.is(await rawRequest(socket, "UNBAN sshd 192.0.2.32\n"), "OK 1\n");
  await lab.waitUnbanned("sshd", "192.0.2.32");
  t.deepEqual(await lab.banned("sshd"), ["192.0.2.30"], "fail2ban's own ban is still there");

  const dirStat = await fs.stat(stateDir);
  const fileStat = await fs.stat(path.join(stateDir, HELPER_LEDGER_FILE));
  t.deepEqual([dirStat.uid, dirStat.mode & 0o777], [process.getuid!(), 0o700]);
  t.deepEqual([fileStat.uid, fileStat.mode & 0o777], [process.getuid!(), 0o600]);
});

anyTest("an empty jail list is refused at start: it once meant any jail", async (t) => {
  const dir = await openDir(t, "f2bz-helper");
  const error = await t.throwsAsync(
    BanHelperServer.listen({
      socket: path.join(dir, "ban.sock"),
      stateDir: path.join(dir, "state"),
      executor: { ban: async () => 1, unban: async () => 1 },
      jails: [],
      neverBan: NeverBanList.create({}),
      logger: memoryLogger().logger,
    }),
    { instanceOf: F2bzError },
  );
  t.is(error.code, "CONFIG_INVALID");
  t.is(error.message, "banHelper.jails is empty, expected the jails it may touch");
  await t.throwsAsync(fs.lstat(path.join(dir, "ban.sock")), { code: "ENOENT" }, "nothing was opened");
});
