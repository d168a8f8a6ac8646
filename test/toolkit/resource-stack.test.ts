import test from "ava";
import { ResourceStack } from "../../src/toolkit/resource-stack.js";

test("resources close newest first, once, however often close is called", async (t) => {
  const closed: string[] = [];
  const stack = new ResourceStack();
  const store = stack.use({ close: () => closed.push("store") });
  t.truthy(store);
  stack.defer(async () => {
    await new Promise((resolve) => setImmediate(resolve));
    closed.push("socket");
  });
  stack.defer(() => closed.push("timer"));
  t.false(stack.closed);
  await Promise.all([stack.close(), stack.close()]);
  await stack.close();
  t.true(stack.closed);
  t.deepEqual(closed, ["timer", "socket", "store"]);
});

test("a failing close is reported, the rest still close, close rejects with the first failure", async (t) => {
  const closed: string[] = [];
  const reported: unknown[] = [];
  const stack = new ResourceStack((error) => reported.push((error as Error).message));
  stack.defer(() => closed.push("store"));
  stack.defer(() => {
    throw new Error("first");
  });
  stack.defer(() => Promise.reject(new Error("second")));
  await t.throwsAsync(stack.close(), { message: "second" });
  t.deepEqual(closed, ["store"]);
  t.deepEqual(reported, ["second", "first"]);
});

test("something registered during shutdown is closed too, and close waits for it", async (t) => {
  const closed: string[] = [];
  const stack = new ResourceStack();
  let release!: () => void;
  stack.defer(
    () =>
      new Promise<void>((resolve) => {
        release = resolve;
      }),
  );
  const closing = stack.close();
  stack.defer(() => closed.push("late"));
  t.deepEqual(closed, []);
  release();
  await closing;
  await stack.close();
  t.deepEqual(closed, ["late"]);
});
