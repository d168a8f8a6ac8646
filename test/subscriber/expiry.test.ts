import test from "ava";
import { Metrics } from "../../src/metrics/registry.js";
import type { ActionRequest } from "../../src/subscriber/action.js";
import { Expiry } from "../../src/subscriber/expiry.js";
import { SubscriberStore } from "../../src/subscriber/store.js";
import { testLogger } from "../helpers/cluster.js";
import { heldIn } from "../helpers/state.js";
import { tempDir } from "../helpers/temp-dir.js";

const T = 1_800_000_000_000;
const A = "0123456789abcdef0123456789abcdef";
const B = "fedcba9876543210fedcba9876543210";

/** The expiry step with its clock and timer in the test's hands: nothing waits for real time. */
async function bench(t: import("ava").ExecutionContext) {
  const stateDir = await tempDir(t, "f2bz-expiry-");
  const store = new SubscriberStore(stateDir);
  t.teardown(() => store.close());
  const applied: ActionRequest[] = [];
  const clock = { now: T };
  const timers: { fn: () => void; ms: number; cancelled: boolean }[] = [];
  const stop = new AbortController();
  const expiry = new Expiry({
    store,
    action: { apply: async (requests) => void applied.push(...requests), close: async () => {} },
    metrics: new Metrics("subscriber"),
    logger: testLogger(),
    signal: stop.signal,
    now: () => clock.now,
    schedule: (fn, ms) => {
      const timer = { fn, ms, cancelled: false };
      timers.push(timer);
      return () => {
        timer.cancelled = true;
      };
    },
  });
  const armed = () => timers.filter((x) => !x.cancelled);
  /** Fires the one armed timer, as its time has come, and waits for the run it starts. */
  const fire = async () => {
    const [timer] = armed();
    if (!timer) throw new Error("no timer armed");
    timer.cancelled = true;
    timer.fn();
    await expiry.run();
  };
  return { store, stateDir, expiry, applied, clock, armed, fire, stop };
}

const hold = (ip: string, origin: string, seq: number, expires: number) => ({
  jail: "f2bz",
  ip,
  origin,
  source: "sshd",
  id: `${origin}:${seq}`,
  expires,
});

test("a ban is lifted when its last holder expires, by the step's own timer", async (t) => {
  const b = await bench(t);
  b.store.addHolder(hold("192.0.2.1", A, 1, T + 5_000));
  b.store.addHolder(hold("192.0.2.1", B, 1, T + 9_000));
  b.expiry.schedule();
  t.deepEqual(
    b.armed().map((x) => x.ms),
    [5_000],
  );
  b.clock.now = T + 5_000;
  await b.fire();
  t.deepEqual(b.applied, [], "B still holds it");
  t.deepEqual(
    b.armed().map((x) => x.ms),
    [4_000],
    "set again to the next expiry",
  );
  b.clock.now = T + 9_000;
  await b.fire();
  t.deepEqual(
    b.applied.map((r) => [r.kind, r.jail, r.ip]),
    [["unban", "f2bz", "192.0.2.1"]],
  );
  t.deepEqual(b.armed(), [], "nothing left to expire");
});

test("the timer never sleeps longer than a minute, so a clock step is noticed", async (t) => {
  const b = await bench(t);
  b.store.addHolder(hold("192.0.2.1", A, 1, T + 2 * 3_600_000));
  b.expiry.schedule();
  t.deepEqual(
    b.armed().map((x) => x.ms),
    [60_000],
  );
  b.clock.now = T + 60_000;
  await b.fire();
  t.deepEqual(b.applied, []);
  t.deepEqual(
    b.armed().map((x) => x.ms),
    [60_000],
  );
});

test("a publisher's announced expiry releases only the hold of that event id", async (t) => {
  const b = await bench(t);
  b.store.addHolder(hold("192.0.2.1", A, 1, T + 60_000));
  b.store.addHolder(hold("192.0.2.1", B, 1, T + 60_000));
  await b.expiry.announced({ ip: "192.0.2.1", id: `${A}:7` });
  await b.expiry.announced({ ip: "192.0.2.2", id: `${A}:1` });
  t.is(heldIn("subscriber", b.stateDir).length, 2, "an id or address it does not hold releases nothing");
  await b.expiry.announced({ ip: "192.0.2.1", id: `${A}:1` });
  t.deepEqual(b.applied, [], "B still holds it");
  await b.expiry.announced({ ip: "192.0.2.1", id: `${B}:1` });
  t.deepEqual(
    b.applied.map((r) => [r.kind, r.ip, r.origin]),
    [["unban", "192.0.2.1", B]],
  );
});

test("once the daemon's signal fired, nothing is scheduled or lifted", async (t) => {
  const b = await bench(t);
  b.store.addHolder(hold("192.0.2.1", A, 1, T - 1));
  b.stop.abort();
  b.expiry.schedule();
  t.deepEqual(b.armed(), []);
  await b.expiry.run();
  t.deepEqual(b.applied, []);
  t.is(heldIn("subscriber", b.stateDir).length, 1, "left for the next start");
});
