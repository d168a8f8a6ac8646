import path from "node:path";
import test, { type ExecutionContext } from "ava";
import Database from "better-sqlite3";
import { Outbox, type OutboxEntry } from "../../src/monitor/outbox.js";
import { MONITOR_STATE_FILE } from "../../src/state/files.js";
import { tempDir } from "../helpers/temp-dir.js";

/** The outbox is a store: entries need not be real signed events here, only distinct bytes. */
function entry(seq: number, time = 1_800_000_000_000): OutboxEntry {
  return {
    id: `${"ab".repeat(16)}:${seq}`,
    seq,
    time,
    expires: time + 3_600_000,
    payload: Buffer.from(`payload ${seq}`),
    signature: Buffer.alloc(64, seq % 256),
  };
}

/** Publishers are named by their pinned key (hex); each here has its own endpoint. */
const A = "aa".repeat(32);
const B = "bb".repeat(32);
const C = "cc".repeat(32);
const endpointOf = (name: string) => `tcp://${name.slice(0, 1)}:1`;

async function open(t: ExecutionContext, publishers = [A, B]) {
  const dir = await tempDir(t, "f2bz-outbox-");
  const boxes: Outbox[] = [];
  const reopen = (list = publishers) => {
    const box = new Outbox(
      dir,
      list.map((name) => ({ name, endpoint: endpointOf(name) })),
    );
    boxes.push(box);
    return box;
  };
  t.teardown(() => {
    for (const box of boxes) box.close();
  });
  return { dir, outbox: reopen(), reopen };
}

const state = { allStopping: false, restarted: [], stopping: ["sshd"], held: [], pid: 4242 };

test("commit stores entries, log position and interpreter state together, and they survive a reopen", async (t) => {
  const { outbox, reopen } = await open(t);
  const [first, second] = [entry(outbox.takeSeq()), entry(outbox.takeSeq())];
  outbox.commit("file", [first, second], { inode: 7, offset: 120 }, state);
  outbox.close();

  const again = reopen();
  t.deepEqual(again.position("file"), { inode: 7, offset: 120 });
  t.deepEqual(again.interpreterState("file"), state);
  t.is(again.size(), 2);
  t.deepEqual(again.nextFor(A), first);
  t.deepEqual(again.nextFor(B), first);
  t.is(again.position("journald"), undefined);
});

test("commit is atomic: when one entry cannot be stored, neither the others nor the position are", async (t) => {
  const { outbox } = await open(t);
  const kept = entry(outbox.takeSeq());
  outbox.commit("file", [kept], { inode: 7, offset: 100 }, { ...state, stopping: [] });
  const fresh = entry(outbox.takeSeq());
  // The second entry reuses an id already stored: the insert fails half-way through the batch.
  const error = t.throws(
    () =>
      outbox.commit(
        "file",
        [fresh, { ...entry(outbox.takeSeq()), id: kept.id }],
        { inode: 7, offset: 200 },
        state,
      ),
    { any: true },
  ) as { code?: string } | undefined;
  t.regex(error?.code ?? "", /^SQLITE_CONSTRAINT/);
  t.false(outbox.has(fresh.id), "the first entry of the batch is not stored either");
  t.is(outbox.size(), 1);
  t.deepEqual(outbox.nextFor(A), kept);
  t.deepEqual(outbox.position("file"), { inode: 7, offset: 100 });
  t.deepEqual(outbox.interpreterState("file"), { ...state, stopping: [] });
});

test("a commit without entries moves the position and state only; a journal cursor round-trips", async (t) => {
  const { outbox, reopen } = await open(t);
  outbox.commit("journald", [], { cursor: "s=abc;i=42" }, state);
  outbox.close();
  const again = reopen();
  t.deepEqual(again.position("journald"), { cursor: "s=abc;i=42" });
  t.is(again.position("file"), undefined);
  t.is(again.size(), 0);
});

test("acknowledge is per publisher: an entry goes only once every publisher has it", async (t) => {
  const { outbox } = await open(t);
  const [one, two] = [entry(outbox.takeSeq()), entry(outbox.takeSeq())];
  outbox.commit("file", [one, two], { inode: 1, offset: 1 }, state);

  outbox.acknowledge(A, one.id);
  t.is(outbox.size(), 2);
  t.deepEqual(outbox.nextFor(A), two);
  t.deepEqual(outbox.nextFor(B), one);
  t.is(outbox.pendingFor(A), 1);
  t.is(outbox.pendingFor(B), 2);

  outbox.acknowledge(A, one.id); // a repeated ack changes nothing
  outbox.acknowledge(B, one.id);
  t.is(outbox.size(), 1);
  t.false(outbox.has(one.id));
  t.deepEqual(outbox.nextFor(B), two);

  outbox.acknowledge(B, two.id);
  outbox.acknowledge(A, two.id);
  t.is(outbox.size(), 0);
  t.is(outbox.nextFor(A), undefined);
  t.is(outbox.nextFor(B), undefined);
});

test("replace: a re-signed entry keeps its place in the queue and goes only to publishers still waiting", async (t) => {
  const { outbox } = await open(t);
  const [one, two] = [entry(outbox.takeSeq()), entry(outbox.takeSeq())];
  outbox.commit("file", [one, two], { inode: 1, offset: 1 }, state);
  outbox.acknowledge(A, one.id);

  const fresh = entry(outbox.takeSeq(), one.time + 60_000);
  t.true(outbox.replace(one.id, fresh));
  t.false(outbox.has(one.id));
  t.true(fresh.seq > two.seq);
  // Still ahead of `two` for B, although its sequence number is now higher; A never gets it again.
  t.deepEqual(outbox.nextFor(B), fresh);
  t.deepEqual(outbox.nextFor(A), two);
  t.is(outbox.pendingFor(A), 1);
  t.is(outbox.pendingFor(B), 2);

  // Gone already (another link replaced it): nothing is stored.
  const late = entry(outbox.takeSeq());
  t.false(outbox.replace(one.id, late));
  t.false(outbox.has(late.id));
  t.is(outbox.size(), 2);

  // Dropped: its ban is over.
  t.true(outbox.replace(fresh.id, undefined));
  t.deepEqual(outbox.nextFor(B), two);
  t.is(outbox.size(), 1);
});

test("sequence numbers: never handed out twice, rising across reopen, above the creation time", async (t) => {
  const before = Date.now();
  const { outbox, reopen } = await open(t);
  const first = outbox.takeSeq();
  t.true(first > before, "a lost state file cannot lead to ids the publishers saw before");
  const taken = [first, outbox.takeSeq(), outbox.takeSeq()];
  t.deepEqual(taken, [first, first + 1, first + 2]);
  // Reserved numbers are gone even if the events signed with them were never stored.
  outbox.commit("file", [entry(taken[1]!)], { inode: 1, offset: 1 }, state);
  outbox.acknowledge(A, entry(taken[1]!).id);
  outbox.acknowledge(B, entry(taken[1]!).id);
  t.is(outbox.size(), 0);
  outbox.close();

  const again = reopen();
  t.is(again.takeSeq(), first + 3);
  again.close();
  t.is(reopen().takeSeq(), first + 4);
});

test("a publisher removed from the config leaves nothing behind; one added gets nothing old", async (t) => {
  const { dir, outbox, reopen } = await open(t);
  const [one, two, three] = [entry(outbox.takeSeq()), entry(outbox.takeSeq()), entry(outbox.takeSeq())];
  outbox.commit("file", [one, two, three], { inode: 1, offset: 1 }, state);
  outbox.acknowledge(A, one.id); // one waits for B only
  outbox.acknowledge(B, two.id); // two waits for A only
  outbox.close();

  const again = reopen([A, C]);
  t.is(again.pendingFor(B), 0);
  t.is(again.pendingFor(C), 0);
  t.is(again.pendingFor(A), 2);
  t.false(again.has(one.id), "waited for B only: dropped with B");
  t.deepEqual(again.nextFor(A), two);
  t.is(again.size(), 2);
  again.close();

  // Nothing of B is left in the file itself.
  const db = new Database(path.join(dir, MONITOR_STATE_FILE), { readonly: true });
  t.teardown(() => db.close());
  t.deepEqual(db.prepare("SELECT count(*) AS n FROM pending WHERE publisher = ?").get(B), { n: 0 });
  t.deepEqual(db.prepare("SELECT count(*) AS n FROM outbox").get(), { n: 2 });
});

test("a state file that named publishers by endpoint: each queue goes to the key configured there now", async (t) => {
  const { dir, outbox, reopen } = await open(t);
  const [one, two] = [entry(outbox.takeSeq()), entry(outbox.takeSeq())];
  outbox.commit("file", [one, two], { inode: 1, offset: 1 }, state);
  outbox.acknowledge(B, one.id);
  outbox.close();
  // As versions before keys named publishers wrote it: the submit endpoint in the queue.
  const old = new Database(path.join(dir, MONITOR_STATE_FILE));
  old.prepare("UPDATE pending SET publisher = 'tcp://a:1' WHERE publisher = ?").run(A);
  old.prepare("UPDATE pending SET publisher = 'tcp://b:1' WHERE publisher = ?").run(B);
  old.close();

  // A keeps its endpoint; B's endpoint is no longer configured, C is new there.
  const again = new Outbox(dir, [
    { name: A, endpoint: "tcp://a:1" },
    { name: C, endpoint: "tcp://b2:1" },
  ]);
  t.teardown(() => again.close());
  t.is(again.pendingFor(A), 2);
  t.deepEqual(again.nextFor(A), one);
  t.is(again.pendingFor(C), 0, "a new key gets nothing old");
  t.is(again.pendingFor("tcp://a:1"), 0);
  t.is(again.pendingFor("tcp://b:1"), 0, "a queue of an endpoint no longer configured is dropped");
  t.is(again.size(), 2);
  again.close();
  t.is(reopen([A]).pendingFor(A), 2, "a reopen keeps the renamed queue");
});

test("the log position keeps its head fingerprint; a state file from before it migrates and resumes without one", async (t) => {
  const { dir, outbox, reopen } = await open(t);
  outbox.commit("file", [], { inode: 7, offset: 120 }, state);
  outbox.close();
  // As version 2 wrote it: no head column.
  const old = new Database(path.join(dir, MONITOR_STATE_FILE));
  old.exec("ALTER TABLE position DROP COLUMN head");
  old.pragma("user_version = 2");
  old.close();

  const migrated = reopen();
  t.deepEqual(migrated.position("file"), { inode: 7, offset: 120 });
  const head = "0f".repeat(32);
  migrated.commit("file", [], { inode: 7, offset: 240, head }, state);
  migrated.close();
  t.deepEqual(reopen().position("file"), { inode: 7, offset: 240, head });
});

test("a publisher renamed in the config, same key: its queue stays", async (t) => {
  const { dir, outbox } = await open(t, [A]);
  const queued = entry(outbox.takeSeq());
  outbox.commit("file", [queued], { inode: 1, offset: 1 }, state);
  outbox.close();
  const again = new Outbox(dir, [{ name: A, endpoint: "tcp://a.example.net:1" }]);
  t.teardown(() => again.close());
  t.deepEqual(again.nextFor(A), queued);
});
