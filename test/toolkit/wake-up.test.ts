import test from "ava";
import { type Schedule, sleep, WakeUp } from "../../src/toolkit/wake-up.js";

/** A clock the test advances by hand: timers fire only when `fire()` is called. */
function manualClock() {
  const timers = new Map<number, { fn: () => void; ms: number }>();
  let next = 0;
  const schedule: Schedule = (fn, ms) => {
    const id = next++;
    timers.set(id, { fn, ms });
    return () => timers.delete(id);
  };
  const fire = () => {
    for (const [id, timer] of [...timers]) {
      timers.delete(id);
      timer.fn();
    }
  };
  return { schedule, fire, pending: () => [...timers.values()].map((timer) => timer.ms) };
}

test("a wake before the wait is kept, and many wakes count once", async (t) => {
  const wakeUp = new WakeUp();
  wakeUp.wake();
  wakeUp.wake();
  t.true(await wakeUp.wait());
  const clock = manualClock();
  const later = new WakeUp(clock.schedule);
  later.wake();
  t.true(await later.wait(1000));
  const second = later.wait(1000);
  clock.fire();
  t.false(await second, "the second wait was not woken");
});

test("a waiting loop is woken with true and its timer is cancelled", async (t) => {
  const clock = manualClock();
  const wakeUp = new WakeUp(clock.schedule);
  const waiting = wakeUp.wait(5000);
  t.deepEqual(clock.pending(), [5000]);
  wakeUp.wake();
  t.true(await waiting);
  t.deepEqual(clock.pending(), []);
});

test("the wait ends with false when its time passes or the signal aborts", async (t) => {
  const clock = manualClock();
  const wakeUp = new WakeUp(clock.schedule);
  const timed = wakeUp.wait(100);
  clock.fire();
  t.false(await timed);
  const controller = new AbortController();
  const aborted = wakeUp.wait(undefined, controller.signal);
  controller.abort();
  t.false(await aborted);
  t.false(await wakeUp.wait(100, controller.signal), "an aborted signal ends the wait at once");
  t.deepEqual(clock.pending(), []);
});

test("sleep says whether its time passed or it was aborted, and leaves no timer", async (t) => {
  const clock = manualClock();
  const slept = sleep(2500, undefined, clock.schedule);
  t.deepEqual(clock.pending(), [2500]);
  clock.fire();
  t.true(await slept);
  const controller = new AbortController();
  const stopped = sleep(2500, controller.signal, clock.schedule);
  controller.abort();
  t.false(await stopped);
  t.deepEqual(clock.pending(), []);
});
