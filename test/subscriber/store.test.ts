import test from "ava";
import { LEDGER_GRACE_MS, wasAppliedByCluster } from "../../src/state/ledger.js";
import { SubscriberStore } from "../../src/subscriber/store.js";
import { tempDir } from "../helpers/temp-dir.js";

const T = 1_800_000_000_000;
const ORIGIN = "0123456789abcdef0123456789abcdef";

async function open(t: import("ava").ExecutionContext): Promise<{ store: SubscriberStore; dir: string }> {
  const dir = await tempDir(t, "f2bz-substore-");
  const store = new SubscriberStore(dir);
  t.teardown(() => store.close());
  return { store, dir };
}

test("a ban held twice keeps the later expiry, in the applied table and in the echo ledger", async (t) => {
  const { store } = await open(t);
  store.recordBan({ jail: "f2bz", ip: "192.0.2.1", id: `${ORIGIN}:1`, origin: ORIGIN, expires: T + 60_000 });
  store.recordBan({ jail: "f2bz", ip: "192.0.2.1", id: `${ORIGIN}:2`, origin: ORIGIN, expires: T + 10_000 });
  t.deepEqual(
    store.applied().map((b) => [b.ip, b.id, b.expires]),
    [["192.0.2.1", `${ORIGIN}:2`, T + 60_000]],
  );
  const atEnd = T + 60_000 + LEDGER_GRACE_MS;
  t.true(wasAppliedByCluster(store.db, "ban", "f2bz", "192.0.2.1", atEnd), "covered until the later expiry");
  t.false(wasAppliedByCluster(store.db, "ban", "f2bz", "192.0.2.1", atEnd + 1));
  t.is(store.nextExpiry(), T + 60_000);
  t.deepEqual(store.due(T + 59_999), []);
  t.is(store.due(T + 60_000).length, 1);
});

test("an unban is recorded in the ledger only for a ban that was held", async (t) => {
  const { store } = await open(t);
  t.false(store.recordUnban("f2bz", "192.0.2.9", T));
  t.false(wasAppliedByCluster(store.db, "unban", "f2bz", "192.0.2.9", T));
  store.recordBan({ jail: "f2bz", ip: "192.0.2.9", id: `${ORIGIN}:3`, origin: ORIGIN, expires: T + 60_000 });
  t.true(store.recordUnban("f2bz", "192.0.2.9", T + 1000));
  t.true(wasAppliedByCluster(store.db, "unban", "f2bz", "192.0.2.9", T + 1000));
  t.deepEqual(store.applied(), []);
  t.false(store.recordUnban("f2bz", "192.0.2.9", T + 2000), "only once");
});

test("an unban event lifts only a ban of its own origin; expiry lifts any", async (t) => {
  const { store } = await open(t);
  const OTHER = "fedcba9876543210fedcba9876543210";
  store.recordBan({
    jail: "f2bz",
    ip: "198.51.100.4",
    id: `${ORIGIN}:7`,
    origin: ORIGIN,
    expires: T + 60_000,
  });
  t.false(store.recordUnban("f2bz", "198.51.100.4", T + 1000, OTHER), "another node's unban");
  t.is(store.applied().length, 1);
  t.true(store.recordUnban("f2bz", "198.51.100.4", T + 2000, ORIGIN));
  store.recordBan({
    jail: "f2bz",
    ip: "198.51.100.5",
    id: `${ORIGIN}:8`,
    origin: ORIGIN,
    expires: T + 60_000,
  });
  t.true(store.recordUnban("f2bz", "198.51.100.5", T + 60_000), "expiry, no origin");
  t.deepEqual(store.applied(), []);
});

test("seen ids, held bans and publisher sequences survive a restart", async (t) => {
  const { store, dir } = await open(t);
  t.true(store.markSeen(`${ORIGIN}:4`, T + 3_600_000));
  t.false(store.markSeen(`${ORIGIN}:4`, T + 3_600_000));
  store.recordBan({
    jail: "sshd",
    ip: "2001:db8::4",
    id: `${ORIGIN}:4`,
    origin: ORIGIN,
    expires: T + 3_600_000,
  });
  store.setPublisherSeq("tcp://192.0.2.100:5680", 42);
  store.close();
  const again = new SubscriberStore(dir);
  t.teardown(() => again.close());
  t.true(again.hasSeen(`${ORIGIN}:4`));
  again.pruneSeen(T + 3_600_000);
  t.true(again.hasSeen(`${ORIGIN}:4`), "kept until its ban expires");
  again.pruneSeen(T + 3_600_001);
  t.false(again.hasSeen(`${ORIGIN}:4`));
  t.deepEqual(
    again.applied().map((b) => [b.jail, b.ip]),
    [["sshd", "2001:db8::4"]],
  );
  t.is(again.publisherSeq("tcp://192.0.2.100:5680"), 42);
  t.is(again.publisherSeq("tcp://192.0.2.100:5681"), undefined);
});

test("without a ledger (dry run, log action) applied bans are held but never claimed as echoes", async (t) => {
  const dir = await tempDir(t, "f2bz-substore-");
  const store = new SubscriberStore(dir, { ledger: false });
  t.teardown(() => store.close());
  store.recordBan({ jail: "f2bz", ip: "192.0.2.7", id: `${ORIGIN}:9`, origin: ORIGIN, expires: T + 60_000 });
  t.true(store.isApplied("f2bz", "192.0.2.7"));
  t.false(wasAppliedByCluster(store.db, "ban", "f2bz", "192.0.2.7", T));
  t.true(store.recordUnban("f2bz", "192.0.2.7", T + 1000, ORIGIN));
  t.false(wasAppliedByCluster(store.db, "unban", "f2bz", "192.0.2.7", T + 1000));
});
