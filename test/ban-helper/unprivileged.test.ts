import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import anyTest from "ava";
import { BanHelperServer } from "../../src/ban-helper/server.js";
import { Fail2banClient } from "../../src/fail2ban/client.js";
import { NeverBanList } from "../../src/policy/never-ban.js";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";
import { createTestUser, isRoot, lookupUser, runNodeAs } from "../harness/users.js";
import { memoryLogger, openDir } from "./helpers.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const fixture = path.join(root, "test/ban-helper/fixtures/client-as-user.ts");
if (!isRoot())
  process.stderr.write("not root: skipping the ban-helper test that needs an unprivileged user\n");
const test = isRoot() ? ensureFail2ban(anyTest) : anyTest.skip;

test("an unprivileged user cannot reach fail2ban, but bans and unbans through the helper", async (t) => {
  t.timeout(90_000);
  const lab = await startFail2ban({ jails: ["f2bz"] });
  t.teardown(() => lab.cleanup());
  const user = await createTestUser("f2bz-banhelper");
  t.teardown(() => user.remove());
  const dir = await openDir(t, "f2bz-helper");
  const socket = path.join(dir, "ban.sock");
  // The helper runs as root (this process); its socket is root:<user's group> 0660.
  const helper = await BanHelperServer.listen({
    socket,
    stateDir: path.join(dir, "state"),
    gid: user.gid,
    executor: new Fail2banClient({ client: lab.paths.client }),
    jails: ["f2bz"],
    neverBan: NeverBanList.create({}),
    logger: memoryLogger().logger,
  });
  t.teardown(() => helper.close());
  const stat = await fs.stat(socket);
  t.deepEqual([stat.uid, stat.gid, stat.mode & 0o777], [0, user.gid, 0o660]);

  const run = async (who: { uid: number; gid: number }, verb: "ban" | "unban") => {
    const args = [verb, socket, lab.paths.realClient, lab.paths.socket, "f2bz", "192.0.2.44"];
    const r = await runNodeAs(who, fixture, args, { cwd: root, timeoutMs: 60_000 });
    t.is(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as {
      uid: number;
      gid: number;
      direct: { code: number; stderr: string };
      result: { count?: number; error?: string };
      neverBan: { count?: number; error?: string };
    };
  };

  const banned = await run(user, "ban");
  t.deepEqual([banned.uid, banned.gid], [user.uid, user.gid]);
  t.is(banned.direct.code, 255, "fail2ban's own socket refuses the user");
  t.regex(banned.direct.stderr, /Permission denied to socket/);
  t.deepEqual(banned.result, { count: 1 });
  t.regex(banned.neverBan.error ?? "", /refused BAN f2bz \(1 addresses\): never-ban address '127\.0\.0\.1'$/);
  t.deepEqual(
    await lab.banned("f2bz"),
    ["192.0.2.44"],
    "the direct banip did not get through; the helper's did",
  );

  const unbanned = await run(user, "unban");
  t.deepEqual(unbanned.result, { count: 1 });
  await lab.waitUnbanned("f2bz", "192.0.2.44");

  // A user outside the socket's group cannot even connect.
  const nobody = await lookupUser("nobody");
  if (nobody) {
    const outsider = await run(nobody, "ban");
    t.regex(outsider.result.error ?? "", /cannot reach it: EACCES$/);
    t.deepEqual(await lab.banned("f2bz"), []);
  }
});
