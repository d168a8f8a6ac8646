import test from "ava";
import { heldUntil } from "../../src/policy/ban-time.js";

const HOUR = 3_600_000;

test("a ban is held until its expiry, at most maxBanTime from now; an unban keeps its own", (t) => {
  const now = 1_000 * HOUR;
  t.is(heldUntil({ kind: "ban", expires: now + HOUR }, now, 24 * HOUR), now + HOUR);
  t.is(heldUntil({ kind: "ban", expires: now + 10_000 * HOUR }, now, 24 * HOUR), now + 24 * HOUR);
  t.is(heldUntil({ kind: "unban", expires: now + 10_000 * HOUR }, now, 24 * HOUR), now + 10_000 * HOUR);
});
