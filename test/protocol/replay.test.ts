import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { generateIdentity } from "../../src/keys/identity.js";
import { ReplayGuard } from "../../src/protocol/replay.js";
import { signEvent, verifyEvent } from "../../src/protocol/signature.js";

const WINDOW = 120_000;
const ORIGIN = "0123456789abcdef0123456789abcdef";
const ev = (seq: number, time: number) => ({ id: `${ORIGIN}:${seq}`, time });

function clock(start = 1_700_000_000_000) {
  const c = { now: start, fn: () => c.now };
  return c;
}

test("a verified event is accepted once; its replay is refused", async (t) => {
  const c = clock();
  const guard = new ReplayGuard({ windowMs: WINDOW, now: c.fn });
  const identity = await generateIdentity("web1");
  const signed = await signEvent(identity, {
    seq: 1,
    kind: "ban",
    jail: "sshd",
    ip: "203.0.113.5",
    time: c.now,
    expires: c.now + 3_600_000,
  });
  const first = await verifyEvent(signed.payload, signed.signature);
  t.true(first.ok);
  if (!first.ok) return;
  t.is(guard.admit(first.event), undefined);
  c.now += 1000;
  const again = await verifyEvent(signed.payload, signed.signature);
  t.true(again.ok);
  if (again.ok) t.is(guard.admit(again.event), "replay");
});

test("stale and future timestamps are refused at the window's edges", (t) => {
  const c = clock();
  const guard = new ReplayGuard({ windowMs: WINDOW, maxFutureMs: 5000, now: c.fn });
  t.is(guard.check(ev(1, c.now - WINDOW)), undefined);
  t.is(guard.check(ev(1, c.now - WINDOW - 1)), "stale");
  t.is(guard.check(ev(1, c.now + 5000)), undefined);
  t.is(guard.check(ev(1, c.now + 5001)), "future");
  t.is(guard.check(ev(1, 0)), "stale");
  t.is(guard.check(ev(1, Number.MAX_SAFE_INTEGER)), "future");
});

test("check alone does not remember; remember does", (t) => {
  const c = clock();
  const guard = new ReplayGuard({ windowMs: WINDOW, now: c.fn });
  t.is(guard.check(ev(1, c.now)), undefined);
  t.is(guard.check(ev(1, c.now)), undefined);
  guard.remember(ev(1, c.now));
  t.is(guard.check(ev(1, c.now)), "replay");
  t.is(guard.check(ev(2, c.now)), undefined);
});

test("an id is remembered for as long as its event could be accepted", (t) => {
  const c = clock();
  const guard = new ReplayGuard({ windowMs: WINDOW, now: c.fn });
  const future = ev(1, c.now + WINDOW); // as far ahead as accepted
  t.is(guard.admit(future), undefined);
  // The event stays acceptable until its time + window; the id must outlive that.
  c.now = future.time + WINDOW;
  t.is(guard.check(future), "replay");
  c.now += 1;
  t.is(guard.check(future), "stale");
  t.is(guard.size, 1);
  c.now = future.time + 2 * WINDOW + 1;
  guard.check(ev(2, c.now));
  t.is(guard.size, 0);
});

test("the cache is bounded and fails closed when full of unexpired ids", (t) => {
  const c = clock();
  const guard = new ReplayGuard({ windowMs: WINDOW, now: c.fn, maxEntries: 3 });
  for (const seq of [1, 2, 3]) t.is(guard.admit(ev(seq, c.now)), undefined);
  t.is(guard.admit(ev(4, c.now)), "busy");
  t.is(guard.admit(ev(1, c.now)), "replay");
  t.is(guard.size, 3);
  c.now += 2 * WINDOW + 1; // every id expired: room again
  t.is(guard.admit(ev(4, c.now)), undefined);
  t.is(guard.size, 1);
});

test("a full cache frees room as soon as one id expires, even out of order", (t) => {
  const c = clock();
  const guard = new ReplayGuard({ windowMs: WINDOW, now: c.fn, maxEntries: 2 });
  t.is(guard.admit(ev(1, c.now + WINDOW)), undefined); // kept until now + 3 windows
  t.is(guard.admit(ev(2, c.now)), undefined); // kept until now + 2 windows
  t.is(guard.admit(ev(3, c.now)), "busy");
  c.now += 2 * WINDOW;
  t.is(guard.admit(ev(3, c.now)), undefined);
  t.is(guard.check(ev(1, c.now)), "replay");
});

test("seen ids survive a restart through seenIds and restore", (t) => {
  const c = clock();
  const before = new ReplayGuard({ windowMs: WINDOW, now: c.fn });
  before.admit(ev(1, c.now));
  before.admit(ev(2, c.now - 1000));
  const saved = before.seenIds();
  t.deepEqual(
    saved.map((e) => e.id),
    [`${ORIGIN}:1`, `${ORIGIN}:2`],
  );
  c.now += 10_000;
  const after = new ReplayGuard({ windowMs: WINDOW, now: c.fn });
  const kept = after.restore([
    ...saved,
    { id: "not an id", until: c.now + 1000 },
    { id: `${ORIGIN}:9`, until: c.now - 1 },
    { id: `${ORIGIN}:10`, until: Number.NaN },
  ]);
  t.is(kept, 2);
  t.is(after.check(ev(1, c.now - 10_000)), "replay");
  t.is(after.check(ev(2, c.now - 11_000)), "replay");
  t.is(after.check(ev(9, c.now)), undefined);
});

test("restore caps a retention no live event could have", (t) => {
  const c = clock();
  const guard = new ReplayGuard({ windowMs: WINDOW, now: c.fn, maxEntries: 1 });
  guard.restore([{ id: `${ORIGIN}:1`, until: Number.MAX_SAFE_INTEGER }]);
  c.now += 3 * WINDOW + 1;
  t.is(guard.admit(ev(2, c.now)), undefined);
});

test("invalid options are configuration errors", (t) => {
  for (const options of [
    { windowMs: 0 },
    { windowMs: -1 },
    { windowMs: 1.5 },
    { windowMs: WINDOW, maxFutureMs: WINDOW + 1 },
    { windowMs: WINDOW, maxEntries: 0 },
  ]) {
    const error = t.throws(() => new ReplayGuard(options), { instanceOf: F2bzError });
    t.is(error?.code, "CONFIG_INVALID");
  }
});
