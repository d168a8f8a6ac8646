import test from "ava";
import { LimitedLog, RateLimitedLog } from "../../src/toolkit/limited-log.js";

function sink() {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const write = (level: string) => (fields: object, message: string) =>
    lines.push({ level, fields: fields as Record<string, unknown>, message });
  return { lines, warn: write("warn"), error: write("error") };
}

test("a key passes burst times per interval; the next line that passes reports what was dropped", (t) => {
  let now = 0;
  const limiter = new RateLimitedLog(1000, 2, () => now);
  t.deepEqual(
    [limiter.allow("k"), limiter.allow("k"), limiter.allow("k"), limiter.allow("k")],
    [0, 0, undefined, undefined],
  );
  t.is(limiter.allow("other"), 0, "keys are limited apart");
  now = 1000;
  t.is(limiter.allow("k"), 2);
});

test("the tracked keys stay bounded", (t) => {
  const limiter = new RateLimitedLog(1000, 1, () => 0, 2);
  limiter.allow("a");
  limiter.allow("b");
  limiter.allow("c");
  t.is(limiter.allow("a"), 0, "the table was cleared to make room, so 'a' passes again");
});

test("limited lines carry suppressed, at their level; dropped lines compute no fields", (t) => {
  let now = 0;
  const out = sink();
  const log = new LimitedLog(out, new RateLimitedLog(1000, 1, () => now));
  let computed = 0;
  const fields = () => {
    computed++;
    return { peer: "x" };
  };
  t.true(log.warn("k", fields, "dropped"));
  t.false(log.warn("k", fields, "dropped"));
  t.false(log.warn("k", fields, "dropped"));
  t.is(computed, 1);
  now = 1000;
  t.true(log.error("k", { peer: "y" }, "failed"));
  t.deepEqual(out.lines, [
    { level: "warn", fields: { peer: "x", suppressed: 0 }, message: "dropped" },
    { level: "error", fields: { peer: "y", suppressed: 2 }, message: "failed" },
  ]);
});
