import test from "ava";
import { isRejectReason, REJECT_REASON_TEXT, REJECT_REASONS } from "../../src/protocol/reasons.js";

test("the reject reasons other processes count by are all present", (t) => {
  const required = [
    "frames",
    "size",
    "encoding",
    "schema",
    "version",
    "signature",
    "origin-mismatch",
    "stale",
    "future",
    "replay",
    "unauthorized",
    "never-ban",
    "rate-limited",
    "echo",
    "cidr",
    "jail",
    "ip",
  ];
  for (const reason of required) t.true(isRejectReason(reason), reason);
  t.deepEqual(REJECT_REASONS, Object.keys(REJECT_REASON_TEXT));
  for (const reason of REJECT_REASONS) t.regex(reason, /^[a-z]+(?:-[a-z]+)*$/);
});

test("isRejectReason refuses inherited and unknown names", (t) => {
  for (const name of ["toString", "__proto__", "constructor", "", "Replay", "replay "])
    t.false(isRejectReason(name));
});
