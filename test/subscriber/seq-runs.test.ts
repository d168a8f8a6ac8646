import test from "ava";
import { SeqRuns } from "../../src/subscriber/seq-runs.js";

const runs = (...seqs: number[]) => {
  const r = new SeqRuns(3);
  for (const seq of seqs) r.add(seq);
  return r;
};

test("every number after the snapshot's, without a hole, completes the state through the last", (t) => {
  t.is(runs().appliedThrough(7), 7);
  t.is(runs(3, 4, 5).appliedThrough(7), 7, "all older than the snapshot: in it");
  t.is(runs(6, 7, 8, 9).appliedThrough(7), 9);
  t.is(runs(8, 9).appliedThrough(7), 9);
  t.is(runs(2, 4, 8).appliedThrough(7), 8, "holes below the snapshot do not matter");
});

test("a hole after the snapshot's number, numbers that go back, or too many holes ask for another round", (t) => {
  t.is(runs(9).appliedThrough(7), undefined, "8 is missing");
  t.is(runs(8, 10).appliedThrough(7), undefined, "9 is missing");
  t.is(runs(8, 9, 3).appliedThrough(2), undefined, "the publisher started over");
  t.is(runs(1, 3, 5, 7).appliedThrough(100), undefined, "more holes than tracked");
});
