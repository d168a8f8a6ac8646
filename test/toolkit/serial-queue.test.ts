import test from "ava";
import { SerialQueue } from "../../src/toolkit/serial-queue.js";

test("tasks run one at a time in the order queued, a later one waits for a slow earlier one", async (t) => {
  const queue = new SerialQueue();
  const log: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const first = queue.run(async () => {
    log.push("first start");
    await gate;
    log.push("first end");
    return 1;
  });
  const second = queue.run(() => {
    log.push("second");
    return 2;
  });
  await Promise.resolve();
  t.deepEqual(log, ["first start"]);
  release();
  t.deepEqual(await Promise.all([first, second]), [1, 2]);
  t.deepEqual(log, ["first start", "first end", "second"]);
});

test("a failed task rejects only its caller; the next task still runs", async (t) => {
  const queue = new SerialQueue();
  const failed = queue.run(() => {
    throw new Error("boom");
  });
  const next = queue.run(() => "ran");
  await t.throwsAsync(failed, { message: "boom" });
  t.is(await next, "ran");
});

test("idle waits for every queued task and does not reject after a failure", async (t) => {
  const queue = new SerialQueue();
  let done = false;
  void queue.run(() => Promise.reject(new Error("boom"))).catch(() => {});
  void queue.run(async () => {
    await new Promise((resolve) => setImmediate(resolve));
    done = true;
  });
  await queue.idle();
  t.true(done);
});
