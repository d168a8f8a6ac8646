import { promises as fs } from "node:fs";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { writeIdentity } from "../../src/keys/files.js";
import { formatPublicCertificate, generateIdentity, type SecretIdentity } from "../../src/keys/identity.js";
import { pendingDir, roleDir } from "../../src/keys/store.js";
import { TOPIC_UPDATE } from "../../src/protocol/feed.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import { createTestUser, type TestUser } from "../harness/users.js";
import { waitFor } from "../harness/wait.js";
import { runCli, spawnDaemon } from "../helpers/cli.js";
import { ANY_PORT, type TestCluster, testCluster } from "../helpers/cluster.js";
import type { LogLine } from "../helpers/logs.js";
import { asRoot } from "../helpers/skip.js";
import { closing, DEADLINE_MS, EventLog, FAST_RECONNECT, Inbox } from "./helpers.js";

/**
 * Issue 10, finding 1, end to end: `f2bz keys revoke` run as an operator runs it, against the built
 * publisher, while the key directory holds something the publisher cannot use. The revocation must
 * still cut the subscriber off and refuse its next connection, and the command must say what the
 * publisher skips.
 */

interface Publisher {
  feed: string;
  curvePublic: Uint8Array;
  lines: readonly LogLine[];
}

/** The built CLI's publisher, as `user` when given; its key pair in a directory that user owns. */
async function startPublisher(
  t: ExecutionContext,
  cluster: TestCluster,
  user?: TestUser,
): Promise<Publisher> {
  const own = async (p: string) => {
    if (user) await fs.chown(p, user.uid, user.gid);
  };
  const keys = path.join(cluster.dir, "pub-identity");
  const identity = await generateIdentity("pub");
  const written = await writeIdentity(keys, identity, false);
  for (const p of [keys, written.secretFile, written.publicFile]) await own(p);
  const state = path.join(cluster.dir, "pub-state");
  await fs.mkdir(state, { mode: 0o700 });
  await own(state);
  await own(pendingDir(cluster.keysDir));
  // The cluster's temp dir is 0700: the publisher's user must pass through it to reach its files.
  await fs.chmod(cluster.dir, 0o755);
  const config = path.join(cluster.dir, "pub.yaml");
  const { stringify } = await import("yaml");
  await fs.writeFile(
    config,
    stringify({
      node: { name: "pub", identity: written.secretFile, stateDir: state },
      publisher: { submit: ANY_PORT, feed: ANY_PORT, snapshot: ANY_PORT, keys: cluster.keysDir },
      logging: { level: "info" },
    }),
  );
  const daemon = spawnDaemon(t, ["publisher", "--config", config], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", NO_COLOR: "1" },
    ...(user ? { as: user } : {}),
  });
  const [listening] = (await daemon.waitLog("listening")) as [LogLine];
  return { feed: String(listening.feed), curvePublic: identity.curvePublic, lines: daemon.lines };
}

/** A subscriber's feed socket: the publisher's heartbeats show that it receives. */
function subscribe(t: ExecutionContext, publisher: Publisher, node: SecretIdentity) {
  const socket = closing(
    t,
    createClientSocket("subscriber", { identity: node, serverKey: publisher.curvePublic, ...FAST_RECONNECT }),
  );
  socket.subscribe(TOPIC_UPDATE);
  const events = new EventLog(socket);
  const inbox = new Inbox(socket);
  socket.connect(publisher.feed);
  return { events, inbox };
}

/** Runs `f2bz keys revoke NAME`, then checks that NAME is cut off and refused from then on. */
async function revokeAndCheck(
  t: ExecutionContext,
  cluster: TestCluster,
  publisher: Publisher,
  alice: SecretIdentity,
) {
  const live = subscribe(t, publisher, alice);
  await live.inbox.waitFor(() => true, "alice's first heartbeat");

  const result = await runCli(["keys", "revoke", "alice", "--keys", cluster.keysDir]);
  t.is(result.code, 0, result.stderr);
  t.is(result.stdout, "revoked subscriber alice\n");

  await live.events.waitFor((e) => e.type === "disconnect", "alice to be disconnected");
  await live.events.authFailure(400);
  const fresh = subscribe(t, publisher, alice);
  await fresh.events.authFailure(400);
  t.is(fresh.inbox.items.length, 0);
  return result;
}

async function strayKey(cluster: TestCluster, mode: number): Promise<string> {
  const file = path.join(roleDir(cluster.keysDir, "subscriber"), "stray.key");
  await fs.writeFile(file, formatPublicCertificate(await generateIdentity("stray")));
  await fs.chmod(file, mode);
  return file;
}

test("keys revoke cuts a subscriber off while a file others may write sits in authorized/, and names it", async (t) => {
  const cluster = await testCluster(t);
  const alice = await cluster.node("alice");
  await cluster.authorize(alice, "subscriber");
  const publisher = await startPublisher(t, cluster);
  const stray = await strayKey(cluster, 0o664);

  const result = await revokeAndCheck(t, cluster, publisher, alice.identity);
  t.is(
    result.stderr,
    `warning: the publisher will skip 1 entry: authorized/subscribers/stray.key: key file '${stray}' has mode 0664, expected no write permission for group or others\n`,
  );
  const skipped = await waitFor(() => publisher.lines.find((l) => l.msg === "key skipped"), {
    timeoutMs: DEADLINE_MS,
    what: "the publisher's 'key skipped' line",
  });
  t.is(skipped.file, stray);
  t.regex(String(skipped.reason), /has mode 0664/);
});

test("keys add names the entries the publisher will skip, and still adds the key", async (t) => {
  const cluster = await testCluster(t);
  const stray = await strayKey(cluster, 0o666);
  const bob = await cluster.node("bob");
  const result = await runCli(["keys", "add", "subscriber", bob.publicKey, "--keys", cluster.keysDir]);
  t.is(result.code, 0, result.stderr);
  t.regex(result.stdout, /^authorized subscriber bob: /);
  t.is(
    result.stderr,
    `warning: the publisher will skip 1 entry: authorized/subscribers/stray.key: key file '${stray}' has mode 0666, expected no write permission for group or others\n`,
  );
});

asRoot(test, "the revocation test with a pending/ unreadable by another user")(
  "keys revoke cuts a subscriber off while pending/ is unreadable by the publisher's user",
  async (t) => {
    const user = await createTestUser("f2bz-access-pending");
    t.teardown(() => user.remove());
    const cluster = await testCluster(t);
    const alice = await cluster.node("alice");
    await cluster.authorize(alice, "subscriber");
    const publisher = await startPublisher(t, cluster, user);
    // Recreated by root under umask 077: the publisher can no longer list it.
    await fs.rm(pendingDir(cluster.keysDir), { recursive: true });
    await fs.mkdir(pendingDir(cluster.keysDir), { mode: 0o700 });

    const result = await revokeAndCheck(t, cluster, publisher, alice.identity);
    t.is(result.stderr, "");
  },
);
