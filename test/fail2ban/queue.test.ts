import anyTest from "ava";
import { Fail2banClient } from "../../src/fail2ban/client.js";
import type { BanExecutor } from "../../src/fail2ban/executor.js";
import { type BanKind, BanQueue } from "../../src/fail2ban/queue.js";
import { ensureFail2ban, startFail2ban } from "../harness/fail2ban.js";

const test = anyTest;
const f2bTest = ensureFail2ban(anyTest);

interface Call {
  kind: BanKind;
  jail: string;
  ips: readonly string[];
  settle(error?: Error): void;
}

/** A structural fake: every call waits until the test settles it, so in-flight states are visible. */
function fakeExecutor() {
  const calls: Call[] = [];
  const open: Call[] = [];
  let active = 0;
  let maxActive = 0;
  let overlaps = 0;
  const record =
    (kind: BanKind) =>
    (jail: string, ips: readonly string[]): Promise<number> => {
      if (open.some((c) => c.jail === jail && c.ips.some((ip) => ips.includes(ip)))) overlaps++;
      active++;
      maxActive = Math.max(maxActive, active);
      return new Promise((resolve, reject) => {
        const call: Call = {
          kind,
          jail,
          ips: [...ips],
          settle(error) {
            active--;
            open.splice(open.indexOf(call), 1);
            if (error) reject(error);
            else resolve(ips.length);
          },
        };
        calls.push(call);
        open.push(call);
      });
    };
  const executor: BanExecutor = { ban: record("ban"), unban: record("unban") };
  return {
    executor,
    calls,
    open,
    maxActive: () => maxActive,
    /** Calls that started while another call for one of their addresses was in flight. */
    overlaps: () => overlaps,
    /** Lets the queue's microtasks and promise callbacks run; not a wait for time. */
    tick: () => new Promise<void>((resolve) => setImmediate(resolve)),
    async settleAll() {
      for (;;) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (open.length === 0) return;
        for (const call of [...open]) call.settle();
      }
    },
  };
}

const ips = (n: number) => Array.from({ length: n }, (_, i) => `192.0.2.${i + 1}`);

test("a burst coalesces into batches of batchSize, at most two calls in flight", async (t) => {
  const fake = fakeExecutor();
  const queue = new BanQueue(fake.executor, { batchSize: 100 });
  for (const ip of [...ips(250)]) t.true(queue.ban("f2bz", ip));
  await fake.tick();
  t.deepEqual(
    fake.calls.map((c) => c.ips.length),
    [100, 100],
  );
  t.is(fake.open.length, 2, "two calls in flight; the other 50 wait");
  await fake.settleAll();
  await queue.flush();
  t.deepEqual(
    fake.calls.map((c) => [c.kind, c.ips.length]),
    [
      ["ban", 100],
      ["ban", 100],
      ["ban", 50],
    ],
  );
  t.is(fake.maxActive(), 2);
  t.is(queue.tally.sent.ban, 250);
});

test("bans and unbans of different addresses are batched separately; the same address keeps its order", async (t) => {
  const fake = fakeExecutor();
  const queue = new BanQueue(fake.executor);
  queue.ban("f2bz", "192.0.2.1");
  queue.ban("f2bz", "192.0.2.2");
  queue.unban("f2bz", "192.0.2.3");
  queue.unban("f2bz", "192.0.2.1"); // must wait for the ban of .1
  queue.ban("f2bz", "192.0.2.4");
  queue.ban("f2bz", "192.0.2.1"); // must wait for the unban of .1
  await fake.tick();
  t.deepEqual(
    fake.open.map((c) => [c.kind, c.ips]),
    [
      ["ban", ["192.0.2.1", "192.0.2.2", "192.0.2.4"]],
      ["unban", ["192.0.2.3"]],
    ],
  );
  fake.open[1]!.settle();
  await fake.tick();
  t.is(fake.open.length, 1, "the unban of .1 waits while the ban of .1 is in flight");
  fake.open[0]!.settle();
  await fake.tick();
  t.deepEqual(
    fake.open.map((c) => [c.kind, c.ips]),
    [["unban", ["192.0.2.1"]]],
  );
  await fake.settleAll();
  await queue.flush();
  t.deepEqual(
    fake.calls.map((c) => [c.kind, c.ips.join(" ")]),
    [
      ["ban", "192.0.2.1 192.0.2.2 192.0.2.4"],
      ["unban", "192.0.2.3"],
      ["unban", "192.0.2.1"],
      ["ban", "192.0.2.1"],
    ],
  );
});

test("for every address, the executor sees its operations in push order and never two at once", async (t) => {
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const fake = fakeExecutor();
  const queue = new BanQueue(fake.executor, { batchSize: 3 });
  const pushed = new Map<string, BanKind[]>();
  const addresses = ips(5);
  for (let round = 0; round < 300; round++) {
    const jail = random() < 0.5 ? "a" : "b";
    const ip = addresses[Math.floor(random() * addresses.length)]!;
    const kind: BanKind = random() < 0.5 ? "ban" : "unban";
    t.true(queue.push(kind, jail, ip));
    pushed.set(`${jail} ${ip}`, [...(pushed.get(`${jail} ${ip}`) ?? []), kind]);
    if (random() < 0.3) {
      await fake.tick();
      // Settle one call in flight, picked at random: completions come back in any order.
      fake.open[Math.floor(random() * fake.open.length)]?.settle();
    }
  }
  await fake.settleAll();
  await queue.flush();
  t.true(fake.maxActive() <= 2);
  t.is(fake.overlaps(), 0);
  const seen = new Map<string, BanKind[]>();
  for (const call of fake.calls) {
    for (const ip of call.ips)
      seen.set(`${call.jail} ${ip}`, [...(seen.get(`${call.jail} ${ip}`) ?? []), call.kind]);
  }
  // Consecutive operations of one kind on one address may be coalesced into one call.
  const collapse = (kinds: BanKind[]) => kinds.filter((k, i) => i === 0 || kinds[i - 1] !== k);
  for (const [key, kinds] of pushed) t.deepEqual(collapse(seen.get(key) ?? []), collapse(kinds), key);
  t.true(fake.calls.length < 300, "operations were batched");
});

test("the queue is bounded: what does not fit is refused and counted", async (t) => {
  const fake = fakeExecutor();
  const queue = new BanQueue(fake.executor, { maxPending: 5 });
  const accepted = ips(8).map((ip) => queue.ban("f2bz", ip));
  t.deepEqual(accepted, [true, true, true, true, true, false, false, false]);
  t.deepEqual(queue.tally.dropped, { ban: 3, unban: 0 });
  await fake.settleAll();
  await queue.flush();
  t.deepEqual(
    fake.calls.map((c) => c.ips.length),
    [5],
  );
});

test("flush and close wait for calls in flight; close refuses what comes after", async (t) => {
  const fake = fakeExecutor();
  const queue = new BanQueue(fake.executor);
  queue.ban("f2bz", "192.0.2.1");
  await fake.tick();
  let flushed = false;
  const flushing = queue.flush().then(() => {
    flushed = true;
  });
  queue.unban("f2bz", "192.0.2.9"); // pushed during the flush: the flush waits for it too
  await fake.tick();
  t.false(flushed);
  fake.open[0]!.settle();
  await fake.tick();
  t.false(flushed);
  await fake.settleAll();
  await flushing;
  t.true(flushed);

  queue.ban("f2bz", "192.0.2.2");
  const closing = queue.close();
  t.false(queue.ban("f2bz", "192.0.2.3"));
  t.is(queue.tally.closed, 1);
  await fake.settleAll();
  await closing;
  await queue.close(); // idempotent
  t.deepEqual(
    fake.calls.map((c) => c.ips),
    [["192.0.2.1"], ["192.0.2.9"], ["192.0.2.2"]],
  );
});

test("a flush gives up when its signal fires, leaving the calls in flight alone", async (t) => {
  const fake = fakeExecutor();
  const queue = new BanQueue(fake.executor);
  queue.ban("f2bz", "192.0.2.1");
  await fake.tick();
  const controller = new AbortController();
  const flushing = queue.flush(controller.signal);
  controller.abort(new Error("stopping"));
  await t.throwsAsync(flushing, { message: "stopping" });
  t.is(fake.open.length, 1);
  await fake.settleAll();
  await queue.flush();
  t.is(queue.tally.sent.ban, 1);
});

test("a failed call is reported and counted, and the queue goes on", async (t) => {
  const fake = fakeExecutor();
  const failures: string[] = [];
  const queue = new BanQueue(fake.executor, {
    onError: (error, batch) =>
      failures.push(`${(error as Error).message}: ${batch.kind} ${batch.ips.join(",")}`),
  });
  queue.ban("f2bz", "192.0.2.1");
  await fake.tick();
  fake.open[0]!.settle(new Error("boom"));
  queue.ban("f2bz", "192.0.2.2");
  await fake.settleAll();
  await queue.flush();
  t.deepEqual(failures, ["boom: ban 192.0.2.1"]);
  t.is(queue.tally.failed, 1);
  t.is(queue.tally.sent.ban, 1);
});

test("a flood into one jail does not starve another", async (t) => {
  const fake = fakeExecutor();
  const queue = new BanQueue(fake.executor, { batchSize: 10, concurrency: 1 });
  for (const ip of ips(100)) queue.ban("busy", ip);
  queue.ban("quiet", "198.51.100.1");
  await fake.tick();
  fake.open[0]!.settle();
  await fake.tick();
  t.deepEqual(
    fake.calls.map((c) => c.jail),
    ["busy", "quiet"],
  );
  await fake.settleAll();
  await queue.flush();
});

f2bTest("against a real server: batches land, and ban-then-unban of one address ends unbanned", async (t) => {
  t.timeout(45_000);
  const lab = await startFail2ban({ jails: ["f2bz"] });
  t.teardown(() => lab.cleanup());
  const queue = new BanQueue(new Fail2banClient({ client: lab.paths.client }), { batchSize: 50 });
  const many = Array.from({ length: 120 }, (_, i) => `198.51.100.${i + 1}`);
  for (const ip of many) queue.ban("f2bz", ip);
  queue.ban("f2bz", "203.0.113.1");
  queue.unban("f2bz", "203.0.113.1");
  queue.unban("f2bz", "203.0.113.2");
  queue.ban("f2bz", "203.0.113.2");
  await queue.flush();
  const banned = new Set(await lab.banned("f2bz"));
  t.is(banned.size, 121);
  t.true(many.every((ip) => banned.has(ip)));
  t.false(banned.has("203.0.113.1"));
  t.true(banned.has("203.0.113.2"));
  t.is(queue.tally.failed, 0);
  // 121 bans in batches of 50 and the held-back unbans and ban: 5 or 6 calls depending on which
  // call returns first, never one per address.
  t.true(queue.tally.calls <= 6, String(queue.tally.calls));
});

test("a run function gets what each operation was pushed with; a batch of one starts at once", async (t) => {
  const runs: { kind: BanKind; jail: string; items: readonly string[]; settle: () => void }[] = [];
  const queue = new BanQueue<string>(
    (batch) =>
      new Promise((resolve) => {
        runs.push({ ...batch, settle: () => resolve(batch.items.length) });
      }),
    { batchSize: 1, concurrency: 1, maxPending: 1 },
  );
  t.true(queue.ban("f2bz", "192.0.2.1", "first"));
  t.deepEqual(
    runs.map((r) => r.items),
    [["first"]],
    "in flight before the tick ends: nothing to coalesce with",
  );
  t.true(queue.unban("f2bz", "192.0.2.1", "second"), "the bound counts what waits, not what runs");
  t.false(queue.ban("f2bz", "192.0.2.2", "third"));
  runs[0]!.settle();
  await new Promise<void>((resolve) => setImmediate(resolve));
  t.deepEqual(
    runs.map((r) => [r.kind, r.items]),
    [
      ["ban", ["first"]],
      ["unban", ["second"]],
    ],
  );
  runs[1]!.settle();
  await queue.close();
  t.is(queue.tally.sent.unban, 1);
});
