import test from "ava";
import { OriginLimiter, TokenBucket } from "../../src/publisher/rate-limit.js";

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
    set: (ms: number) => {
      now = ms;
    },
  };
}

function takeAll(take: () => boolean, tries: number): number {
  let passed = 0;
  for (let i = 0; i < tries; i++) if (take()) passed++;
  return passed;
}

test("a bucket lets its burst through at once, then refills at its rate", (t) => {
  const clock = manualClock();
  const bucket = new TokenBucket(10, 5, clock.now);
  t.is(
    takeAll(() => bucket.take(), 20),
    5,
  );
  clock.advance(99);
  t.false(bucket.take(), "0.99 of a token is not a token");
  clock.advance(1);
  t.true(bucket.take());
  t.false(bucket.take());
  clock.advance(250);
  t.is(
    takeAll(() => bucket.take(), 10),
    2,
  );
});

test("a bucket never saves more than its burst", (t) => {
  const clock = manualClock();
  const bucket = new TokenBucket(10, 5, clock.now);
  clock.advance(3_600_000);
  t.is(
    takeAll(() => bucket.take(), 100),
    5,
  );
});

test("a clock stepped backwards neither drains nor fills a bucket", (t) => {
  const clock = manualClock(10_000_000);
  const bucket = new TokenBucket(10, 5, clock.now);
  t.is(
    takeAll(() => bucket.take(), 2),
    2,
  );
  clock.set(10_000_000 - 3_600_000);
  t.is(
    takeAll(() => bucket.take(), 10),
    3,
    "the tokens saved before the step are still there",
  );
  clock.advance(100);
  t.true(bucket.take(), "and it refills at its rate from the new time on");
});

test("a flood from one origin is cut at its own bucket; another origin keeps flowing", (t) => {
  const clock = manualClock();
  const limiter = new OriginLimiter({ perOriginRate: 2, perOriginBurst: 10, globalRate: 100 }, clock.now);
  const refusals: string[] = [];
  let flooded = 0;
  for (let i = 0; i < 1000; i++) {
    const refused = limiter.take("flood");
    if (refused) refusals.push(refused);
    else flooded++;
  }
  t.is(flooded, 10);
  t.true(
    refusals.every((r) => r === "origin"),
    "the flood never reaches the global bucket",
  );
  t.is(
    takeAll(() => limiter.take("quiet") === undefined, 10),
    10,
  );
  clock.advance(1000);
  t.is(
    takeAll(() => limiter.take("flood") === undefined, 10),
    2,
  );
});

test("many origins together are held to the global rate", (t) => {
  const clock = manualClock();
  const limiter = new OriginLimiter({ perOriginRate: 100, perOriginBurst: 10, globalRate: 20 }, clock.now);
  let passed = 0;
  let global = 0;
  for (let origin = 0; origin < 10; origin++) {
    for (let i = 0; i < 10; i++) {
      const refused = limiter.take(`origin-${origin}`);
      if (refused === undefined) passed++;
      if (refused === "global") global++;
    }
  }
  t.is(passed, 20, "the global burst is max(globalRate, perOriginBurst)");
  t.is(global, 80);
  clock.advance(500);
  t.is(
    takeAll(() => limiter.take("origin-9") === undefined, 100),
    10,
  );
});
