import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import anyTest, { type ExecutionContext } from "ava";
import { BanHelperServer } from "../../src/ban-helper/server.js";
import { F2bzError } from "../../src/errors.js";
import { BanHelperClient } from "../../src/fail2ban/helper-client.js";
import { NeverBanList } from "../../src/policy/never-ban.js";
import { createTestUser, isRoot, type TestUser } from "../harness/users.js";
import { memoryLogger, openDir } from "./helpers.js";

if (!isRoot()) process.stderr.write("not root: skipping the ban-helper tests that need another user\n");
const test = isRoot() ? anyTest : anyTest.skip;

/** One local user per file, the attacker: owns what the tests hand to it. */
let user: Promise<TestUser> | undefined;
const attacker = (): Promise<TestUser> => {
  user ??= createTestUser("f2bz-helper-atk");
  return user;
};
anyTest.after.always(async () => (await user)?.remove());

const helperOptions = (dir: string) => ({
  socket: path.join(dir, "ban.sock"),
  stateDir: path.join(dir, "state"),
  executor: { ban: async (_j: string, ips: readonly string[]) => ips.length, unban: async () => 0 },
  jails: ["f2bz"],
  neverBan: NeverBanList.create({}),
  logger: memoryLogger().logger,
});

const refusedToListen = (t: ExecutionContext, options: ReturnType<typeof helperOptions>) =>
  t.throwsAsync(BanHelperServer.listen(options), { instanceOf: F2bzError });

test("the helper refuses a socket directory another user may write", async (t) => {
  const atk = await attacker();
  const owned = await openDir(t, "f2bz-helper");
  await fs.chown(owned, atk.uid, atk.gid);
  const byUser = await refusedToListen(t, helperOptions(owned));
  t.is(byUser.code, "BIND_FAILED");
  t.is(byUser.message, `ban-helper socket directory '${owned}' is owned by uid ${atk.uid}, expected root`);

  const open = await openDir(t, "f2bz-helper");
  await fs.chmod(open, 0o1777); // like /tmp: the sticky bit still lets anyone create the path first
  const byAnyone = await refusedToListen(t, helperOptions(open));
  t.is(byAnyone.code, "BIND_FAILED");
  t.is(
    byAnyone.message,
    `ban-helper socket directory '${open}' has mode 1777, expected no write permission for group or others`,
  );
  for (const dir of [owned, open]) t.deepEqual(await fs.readdir(dir), [], "nothing created there");
});

test("the helper refuses a ledger directory another user may write", async (t) => {
  const atk = await attacker();
  const dir = await openDir(t, "f2bz-helper");
  const options = helperOptions(dir);
  await fs.mkdir(options.stateDir, { mode: 0o700 });
  await fs.chown(options.stateDir, atk.uid, atk.gid);
  const byUser = await refusedToListen(t, options);
  t.is(byUser.code, "IO_FAILED");
  t.is(
    byUser.message,
    `ban-helper state directory '${options.stateDir}' is owned by uid ${atk.uid}, expected root`,
  );
  await fs.chown(options.stateDir, 0, 0);
  await fs.chmod(options.stateDir, 0o777);
  const byAnyone = await refusedToListen(t, options);
  t.regex(byAnyone.message, /state directory '.*' has mode 0777, expected no write permission/);
  t.deepEqual(await fs.readdir(options.stateDir), [], "no ledger was written there");
  t.false((await fs.readdir(dir)).includes("ban.sock"));
});

test("the subscriber's client refuses a helper socket a local user could have put there", async (t) => {
  const atk = await attacker();
  // A fake helper that answers every ban with success and learns what the subscriber bans.
  let connections = 0;
  const fake = net.createServer((socket) => {
    connections++;
    socket.resume(); // reads the request away, so the client's end is seen and the socket closes
    socket.end("OK 1\n");
  });
  t.teardown(() => new Promise<void>((resolve) => fake.close(() => resolve())));
  const listen = (socket: string) =>
    new Promise<void>((resolve, reject) => {
      fake.once("error", reject);
      fake.listen(socket, () => resolve());
    });

  // The user's socket in a root directory (as if root's had been swapped before the dir was locked).
  const rootDir = await openDir(t, "f2bz-helper");
  const socket = path.join(rootDir, "ban.sock");
  await listen(socket);
  await fs.chown(socket, atk.uid, atk.gid);
  const client = new BanHelperClient(socket, { timeoutMs: 5_000 });
  const ownSocket = await t.throwsAsync(client.ban("f2bz", ["192.0.2.1"]), { instanceOf: F2bzError });
  t.is(ownSocket.code, "FAIL2BAN_FAILED");
  t.is(ownSocket.message, `ban-helper socket '${socket}' is owned by uid ${atk.uid}, expected root`);

  // Root's socket, but in a directory the user may write: it could be swapped at any moment.
  await fs.chown(socket, 0, 0);
  await fs.chown(rootDir, atk.uid, atk.gid);
  const ownDir = await t.throwsAsync(client.unban("f2bz", ["192.0.2.1"]), { instanceOf: F2bzError });
  t.is(ownDir.message, `ban-helper socket directory '${rootDir}' is owned by uid ${atk.uid}, expected root`);
  await fs.chown(rootDir, 0, 0);
  await fs.chmod(rootDir, 0o777);
  const openDirError = await t.throwsAsync(client.ban("f2bz", ["192.0.2.1"]), { instanceOf: F2bzError });
  t.regex(openDirError.message, /socket directory '.*' has mode 0777, expected no write permission/);
  t.is(connections, 0, "the subscriber never connected, so it sent nothing and believed nothing");

  // The same socket, root's in a root directory, is used.
  await fs.chmod(rootDir, 0o755);
  t.is(await client.ban("f2bz", ["192.0.2.1"]), 1);
  t.is(connections, 1);
});
