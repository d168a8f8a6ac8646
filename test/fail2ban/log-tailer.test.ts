import { createHash } from "node:crypto";
import {
  appendFileSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmdirSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { pino } from "pino";
import { LogTailer, type Position, type TailedLine } from "../../src/fail2ban/log-tailer.js";
import { Metrics } from "../../src/metrics/registry.js";
import { waitFor } from "../harness/wait.js";
import { tempDir } from "../helpers/temp-dir.js";

const DEADLINE_MS = 5000;

function follow(t: ExecutionContext, file: string, start: Position | "end", maxLineBytes?: number) {
  t.timeout(10_000);
  const records: Array<{ msg: string; level: number } & Record<string, unknown>> = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void records.push(JSON.parse(s)) });
  const metrics = new Metrics("monitor");
  const tailer = new LogTailer({
    file,
    start,
    pollIntervalMs: 50,
    logger,
    metrics,
    ...(maxLineBytes === undefined ? {} : { maxLineBytes }),
  });
  t.teardown(() => tailer.close());
  const lines: TailedLine[] = [];
  const done = (async () => {
    for await (const line of tailer) lines.push(line);
  })();
  return {
    tailer,
    lines,
    done,
    metrics,
    records,
    /** Resolves with the first n lines once they are there. */
    waitLines: (n: number) =>
      waitFor(() => (lines.length >= n ? lines.slice(0, n) : undefined), {
        timeoutMs: DEADLINE_MS,
        what: `${n} lines (have ${JSON.stringify(lines.map((l) => l.line))})`,
        intervalMs: 10,
      }),
    waitLog: (msg: string) =>
      waitFor(() => records.find((r) => r.msg === msg), {
        timeoutMs: DEADLINE_MS,
        what: `log '${msg}'`,
        intervalMs: 10,
      }),
    text: () => lines.map((l) => l.line),
  };
}

const inode = (file: string) => statSync(file).ino;

/** The position after `offset` bytes of the file as it is now, with the fingerprint of its head. */
function at(file: string, offset: number): Position {
  const head = createHash("sha256").update(readFileSync(file).subarray(0, Math.min(offset, 4096)));
  return { inode: inode(file), offset, head: head.digest("hex") };
}

test("start end: what the file holds is skipped; appended lines come with the position after each", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "old 1\nold 2\n");
  const f = follow(t, file, "end");
  await f.waitLog("following log file");
  appendFileSync(file, "new 1\nnew 2\n");
  t.deepEqual(await f.waitLines(2), [
    { line: "new 1", position: at(file, 18) },
    { line: "new 2", position: at(file, 24) },
  ]);
});

test("start end in the middle of a line: the rest of that line is skipped, not yielded half", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "old\nhalf a li");
  const f = follow(t, file, "end");
  await f.waitLog("following log file");
  appendFileSync(file, "ne\nnext\nEND\n");
  await f.waitLines(2);
  t.deepEqual(f.text(), ["next", "END"]);
});

test("a partial line is held until its newline arrives", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "");
  const f = follow(t, file, "end");
  await f.waitLog("following log file");
  appendFileSync(file, "A\n2026-11-29 00:43:01,986 fail2ban.actions [1]: NOT");
  await f.waitLines(1);
  appendFileSync(file, "ICE  [sshd] Ban 192.0.2.1\n");
  const lines = await f.waitLines(2);
  t.is(lines[1]?.line, "2026-11-29 00:43:01,986 fail2ban.actions [1]: NOTICE  [sshd] Ban 192.0.2.1");
  t.is(lines[1]?.position.offset, statSync(file).size);
});

test("logrotate create: the old inode is read until the new file has lines, then the new one from 0", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  // fail2ban keeps its file open and writes to it until flushlogs, whatever happens to the name
  let fd = openSync(file, "a");
  t.teardown(() => closeSync(fd));
  writeSync(fd, "a0\n");
  const f = follow(t, file, "end");
  await f.waitLog("following log file");
  const oldInode = inode(file);
  writeSync(fd, "a1\n");
  await f.waitLines(1);
  renameSync(file, `${file}.1`);
  writeSync(fd, "a2\n");
  await f.waitLines(2);
  writeFileSync(file, ""); // logrotate's `create`
  writeSync(fd, "a3\n");
  await f.waitLines(3);
  // flushlogs: the last line to the old file, the new file opened, written at once (no tick between)
  writeSync(fd, "a4\n");
  closeSync(fd);
  fd = openSync(file, "a");
  writeSync(fd, "b1 rollover performed\nb2\n");
  const lines = await f.waitLines(6);
  t.deepEqual(
    lines.map((l) => [
      l.line,
      l.position.inode === oldInode ? "old" : l.position.inode === inode(file) ? "new" : "?",
    ]),
    [
      ["a1", "old"],
      ["a2", "old"],
      ["a3", "old"],
      ["a4", "old"],
      ["b1 rollover performed", "new"],
      ["b2", "new"],
    ],
  );
  t.deepEqual(lines[5]?.position, at(file, 25));
  t.is(f.metrics.get("log_source_events_total", { event: "rotation" }), 1);
});

test("copytruncate: a file shorter than the offset is read again from 0", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "l1\nl2\n");
  const f = follow(t, file, { inode: inode(file), offset: 0 });
  await f.waitLines(2);
  truncateSync(file, 0);
  appendFileSync(file, "m1\n");
  const lines = await f.waitLines(3);
  t.deepEqual(lines[2], { line: "m1", position: at(file, 3) });
  t.is(f.metrics.get("log_source_events_total", { event: "truncation" }), 1);
});

test("copytruncate refilled past the offset before the next look: noticed by the first bytes", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "2026-11-29 00:00:01 first\n");
  const f = follow(t, file, { inode: inode(file), offset: 0 });
  await f.waitLines(1);
  // truncate and refill in one synchronous step: the tailer never sees the file shorter
  writeFileSync(file, "2026-11-29 00:10:00 second, a longer line\n2026-11-29 00:10:01 third\n");
  const lines = await f.waitLines(3);
  t.deepEqual(
    lines.map((l) => l.line),
    ["2026-11-29 00:00:01 first", "2026-11-29 00:10:00 second, a longer line", "2026-11-29 00:10:01 third"],
  );
  t.is(f.metrics.get("log_source_events_total", { event: "truncation" }), 1);
});

test("delete and recreate: the new file is read from 0", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "d0\n");
  const f = follow(t, file, "end");
  await f.waitLog("following log file");
  appendFileSync(file, "d1\n");
  await f.waitLines(1);
  unlinkSync(file);
  writeFileSync(file, "e1\ne2\n");
  const lines = await f.waitLines(3);
  t.deepEqual(f.text(), ["d1", "e1", "e2"]);
  t.deepEqual(lines[2]?.position, at(file, 6));
});

test("a log that does not exist yet, in a directory that does not exist yet, is read from 0", async (t) => {
  const dir = path.join(await tempDir(t), "log");
  const file = path.join(dir, "fail2ban.log");
  const f = follow(t, file, "end");
  await f.waitLog("log file does not exist yet; waiting for it");
  mkdirSync(dir);
  writeFileSync(file, "f1\nf2\n");
  t.deepEqual(await f.waitLines(2), [
    { line: "f1", position: at(file, 3) },
    { line: "f2", position: at(file, 6) },
  ]);
});

test("bytes that are not UTF-8 are replaced; the lines still come, positions count bytes", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(
    file,
    Buffer.concat([
      Buffer.from("ok1\n"),
      Buffer.from([0x66, 0xff, 0xfe, 0x67, 0x0a]),
      Buffer.from("ok2\r\n"),
      Buffer.from("caf\xe9\n", "latin1"),
    ]),
  );
  const lines = await follow(t, file, { inode: inode(file), offset: 0 }).waitLines(4);
  t.deepEqual(
    lines.map((l) => [l.line, l.position.offset]),
    [
      ["ok1", 4],
      ["f\uFFFD\uFFFDg", 9],
      ["ok2", 14],
      ["caf\uFFFD", 19],
    ],
  );
});

test("over-long lines are skipped whole, with a counted warning, in one write or several", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "");
  const f = follow(t, file, "end", 100);
  await f.waitLog("following log file");
  appendFileSync(file, `${"a".repeat(1000)}\nafter 1\nm1\n${"b".repeat(80)}`);
  await f.waitLines(2);
  appendFileSync(file, "b".repeat(80));
  appendFileSync(file, "\nafter 2\n");
  await f.waitLines(3);
  t.deepEqual(f.text(), ["after 1", "m1", "after 2"]);
  t.is(f.metrics.get("log_source_events_total", { event: "overlong-line" }), 2);
  t.true(f.records.some((r) => r.msg === "over-long log line skipped"));
});

test("resume from a persisted position: exactly the lines after it, nothing twice", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "r1\nr2\nr3\n");
  const first = follow(t, file, { inode: inode(file), offset: 0 });
  const seen = await first.waitLines(3);
  first.tailer.close();
  await first.done;
  appendFileSync(file, "r4\n");
  const second = follow(t, file, seen[1]!.position);
  await second.waitLines(2);
  appendFileSync(file, "END\n");
  await second.waitLines(3);
  t.deepEqual(second.text(), ["r3", "r4", "END"]);
});

test("resume after a rotation while stopped: the rest of the old file, then the new one", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "s1\ns2\n");
  const first = follow(t, file, { inode: inode(file), offset: 0 });
  const saved = (await first.waitLines(1))[0]!.position;
  first.tailer.close();
  await first.done;
  renameSync(file, `${file}.1`);
  appendFileSync(`${file}.1`, "s3\n"); // fail2ban wrote on until flushlogs
  writeFileSync(file, "t1\n");
  const second = follow(t, file, saved);
  await second.waitLines(3);
  appendFileSync(file, "END\n");
  await second.waitLines(4);
  t.deepEqual(second.text(), ["s2", "s3", "t1", "END"]);
  t.truthy(
    second.records.find((r) => r.msg === "log rotated while stopped; reading the rest of the old file first"),
  );
});

test("resume after a rotation while stopped, old file gone: the new file from 0, and a warning", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "s1\ns2\n");
  const saved = { inode: inode(file), offset: 3 };
  renameSync(file, `${file}.1`);
  writeFileSync(file, "t1\n");
  unlinkSync(`${file}.1`);
  const f = follow(t, file, saved);
  await f.waitLines(1);
  appendFileSync(file, "END\n");
  await f.waitLines(2);
  t.deepEqual(f.text(), ["t1", "END"]);
  t.truthy(f.records.find((r) => r.level === 40 && String(r.msg).includes("old file is gone")));
});

test("resume when the file was truncated while stopped: from 0", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "u1\nu2\nu3\n");
  const saved = { inode: inode(file), offset: 9 };
  truncateSync(file, 0);
  appendFileSync(file, "v1\n");
  const f = follow(t, file, saved);
  await f.waitLines(1);
  appendFileSync(file, "END\n");
  await f.waitLines(2);
  t.deepEqual(f.text(), ["v1", "END"]);
});

test("resume when the file was truncated and refilled past the offset while stopped: the head fingerprint tells, from 0", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  // Over 4 KiB, so the fingerprint covers a full head; the refill has the same line lengths, so the
  // old offset falls on a line boundary in it and only the first bytes differ.
  const lines = (stamp: string) =>
    Array.from({ length: 100 }, (_, i) => `2026-11-29 ${stamp} line ${String(i).padStart(3, "0")}\n`).join(
      "",
    );
  writeFileSync(file, lines("00:00:01"));
  const first = follow(t, file, { inode: inode(file), offset: 0 });
  const saved = (await first.waitLines(100))[99]!.position;
  first.tailer.close();
  await first.done;
  t.deepEqual(saved, at(file, statSync(file).size));
  writeFileSync(file, `${lines("00:10:00")}2026-11-29 00:10:00 after\n`); // O_TRUNC: same inode
  t.is(inode(file), saved.inode);

  const second = follow(t, file, saved);
  await second.waitLines(101);
  t.deepEqual(second.text()[0], "2026-11-29 00:10:00 line 000");
  t.deepEqual(second.text()[100], "2026-11-29 00:10:00 after");
  t.is(second.metrics.get("log_source_events_total", { event: "truncation" }), 1);
});

test("resume with the head unchanged: exactly the lines after the position, a small file too", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "h1\nh2\n");
  const first = follow(t, file, { inode: inode(file), offset: 0 });
  const saved = (await first.waitLines(1))[0]!.position;
  first.tailer.close();
  await first.done;
  t.deepEqual(saved, at(file, 3));
  appendFileSync(file, "h3\n");
  const second = follow(t, file, saved);
  await second.waitLines(2);
  t.deepEqual(second.text(), ["h2", "h3"]);
  t.is(second.metrics.get("log_source_events_total", { event: "truncation" }), 0);
});

test("errors are logged and retried: a directory where the log should be, later replaced by the log", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  const f = follow(t, file, "end");
  await f.waitLog("log file does not exist yet; waiting for it");
  mkdirSync(file);
  await f.waitLog("reading the log failed; retrying");
  rmdirSync(file);
  writeFileSync(file, "w1\n");
  await f.waitLines(1);
  t.deepEqual(f.text(), ["w1"]);
  t.true(f.metrics.get("log_source_events_total", { event: "error" }) >= 1);
});

test("close() ends the iteration, is idempotent, and works before the first line", async (t) => {
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "");
  const f = follow(t, file, "end");
  await f.waitLog("following log file");
  f.tailer.close();
  f.tailer.close();
  await f.done;
  appendFileSync(file, "after close\n");
  t.deepEqual(f.lines, []);

  const early = new LogTailer({ file, start: "end", logger: pino({ level: "silent" }) });
  early.close();
  for await (const _ of early) t.fail("a closed tailer yields nothing");
  early.close();
});

test("an abort signal closes the tailer", async (t) => {
  t.timeout(10_000);
  const file = path.join(await tempDir(t), "fail2ban.log");
  writeFileSync(file, "x\n");
  const controller = new AbortController();
  const tailer = new LogTailer({
    file,
    start: { inode: inode(file), offset: 0 },
    logger: pino({ level: "silent" }),
    signal: controller.signal,
  });
  t.teardown(() => tailer.close());
  const got: string[] = [];
  for await (const { line } of tailer) {
    got.push(line);
    controller.abort();
  }
  t.deepEqual(got, ["x"]);
});
