import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import test, { type ExecutionContext } from "ava";
import { pino } from "pino";
import {
  type JournalLine,
  JournalTailer,
  journalctlArgs,
  parseJournalEntry,
} from "../../src/fail2ban/journal.js";
import { type LogRecord, parseLogLine } from "../../src/fail2ban/log-line.js";
import { Metrics } from "../../src/metrics/registry.js";
import { waitFor } from "../harness/wait.js";
import { tempDir } from "../helpers/temp-dir.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/journal-fail2ban.jsonl", import.meta.url));
const FAKE = fileURLToPath(new URL("./fixtures/fake-journalctl.mjs", import.meta.url));
const ENTRIES = readFileSync(FIXTURE, "utf8")
  .split("\n")
  .filter((l) => l.length > 0);
const cursorOf = (i: number) => (JSON.parse(ENTRIES[i] ?? "{}") as { __CURSOR: string }).__CURSOR;

test("journalctlArgs: follow the unit as json, from now or after a cursor", (t) => {
  t.deepEqual(journalctlArgs("fail2ban.service"), [
    "--follow",
    "--output",
    "json",
    "--quiet",
    "--no-pager",
    "--unit",
    "fail2ban.service",
    "--since",
    "now",
  ]);
  t.deepEqual(journalctlArgs("fail2ban.service", "s=1;i=2").slice(-2), ["--after-cursor", "s=1;i=2"]);
});

const entry = (fields: Record<string, unknown>) => JSON.stringify({ __CURSOR: "s=a;i=1", ...fields });

test("parseJournalEntry: logtarget SYSTEMD-JOURNAL, a bare message with logger and priority fields", (t) => {
  const fields = { SYSLOG_IDENTIFIER: "fail2ban", LOGGER: "fail2ban.actions", PRIORITY: "4", _PID: "6218" };
  t.deepEqual(parseJournalEntry(entry({ ...fields, MESSAGE: "[sshd-test] Ban 192.0.2.10" })), {
    record: {
      type: "ban",
      jail: "sshd-test",
      ip: "192.0.2.10",
      pid: 6218,
      raw: "[sshd-test] Ban 192.0.2.10",
    },
    message: "[sshd-test] Ban 192.0.2.10",
    cursor: "s=a;i=1",
  });
  // the same words from another logger or at INFO are not a ban
  t.is(
    parseJournalEntry(entry({ ...fields, LOGGER: "fail2ban.filter", MESSAGE: "[sshd] Ban 192.0.2.1" }))
      ?.record,
    undefined,
  );
  t.is(
    parseJournalEntry(entry({ ...fields, PRIORITY: "6", MESSAGE: "[sshd] Ban 192.0.2.1" }))?.record,
    undefined,
  );
  t.like(
    parseJournalEntry(
      entry({ ...fields, LOGGER: "fail2ban.server", PRIORITY: "6", MESSAGE: "Stopping all jails" }),
    ),
    {
      record: { type: "shutdown", phase: "stop-all-jails", pid: 6218 },
    },
  );
});

test("parseJournalEntry: logtarget SYSLOG through journald, and stdout captured by systemd", (t) => {
  t.like(
    parseJournalEntry(
      entry({
        SYSLOG_IDENTIFIER: "fail2ban.actions",
        SYSLOG_PID: "9948",
        _PID: "9948",
        MESSAGE: "NOTICE [sshd-test] Unban 2001:db8::90",
      }),
    ),
    {
      record: {
        type: "unban",
        jail: "sshd-test",
        ip: "2001:db8::90",
        pid: 9948,
        raw: "NOTICE [sshd-test] Unban 2001:db8::90",
      },
    },
  );
  t.like(
    parseJournalEntry(
      entry({
        SYSLOG_IDENTIFIER: "fail2ban-server",
        _TRANSPORT: "stdout",
        MESSAGE: "2026-11-29 01:28:41,175 fail2ban.actions        [6218]: NOTICE  [sshd-test] Ban 192.0.2.10",
      }),
    ),
    { record: { type: "ban", jail: "sshd-test", ip: "192.0.2.10", pid: 6218 } },
  );
  // another program in the unit writing ban-shaped text
  t.is(
    parseJournalEntry(entry({ SYSLOG_IDENTIFIER: "sh", _PID: "7", MESSAGE: "[sshd] Ban 192.0.2.1" }))?.record,
    undefined,
  );
});

test("parseJournalEntry: MESSAGE as bytes, null or several values; lines that are not entries", (t) => {
  const bytes = [...Buffer.from("[web-01] Ban 203.0.113.77")];
  t.like(parseJournalEntry(entry({ SYSLOG_IDENTIFIER: "fail2ban", PRIORITY: "4", MESSAGE: bytes })), {
    record: { type: "ban", jail: "web-01", ip: "203.0.113.77" },
  });
  const latin1 = [...Buffer.from("Added logfile: '/var/log/caf\xe9.log'", "latin1")];
  t.like(parseJournalEntry(entry({ SYSLOG_IDENTIFIER: "fail2ban", MESSAGE: latin1 })), {
    message: "Added logfile: '/var/log/caf\uFFFD.log'",
    record: { type: "ignored", what: "other" },
  });
  // still yielded, so that the cursor advances past it
  t.deepEqual(parseJournalEntry(entry({ SYSLOG_IDENTIFIER: "fail2ban", MESSAGE: null })), {
    record: undefined,
    message: "",
    cursor: "s=a;i=1",
  });
  t.is(parseJournalEntry(entry({ MESSAGE: ["[a] Ban 192.0.2.1", "[b] Ban 192.0.2.2"] }))?.record, undefined);
  t.is(parseJournalEntry(entry({ MESSAGE: [1, 2, 300] }))?.record, undefined);
  for (const bad of [
    "",
    "not json",
    "[]",
    "null",
    "42",
    '{"MESSAGE":"x"}',
    '{"__CURSOR":""}',
    '{"__CURSOR":7}',
  ]) {
    t.is(parseJournalEntry(bad), undefined, bad);
  }
});

function follow(
  t: ExecutionContext,
  argvLog: string,
  mode: "follow" | "exit",
  cursor?: string,
  command = process.execPath,
) {
  t.timeout(10_000);
  const records: Array<{ msg: string } & Record<string, unknown>> = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void records.push(JSON.parse(s)) });
  const metrics = new Metrics("monitor");
  const tailer = new JournalTailer({
    unit: "fail2ban.service",
    command,
    commandArgs: [FAKE, FIXTURE, mode, argvLog],
    restartDelayMs: 20,
    logger,
    metrics,
    ...(cursor === undefined ? {} : { cursor }),
  });
  t.teardown(() => tailer.close());
  const lines: JournalLine[] = [];
  const done = (async () => {
    for await (const line of tailer) lines.push(line);
  })();
  const waitLines = (n: number) =>
    waitFor(() => (lines.length >= n ? lines : undefined), {
      timeoutMs: 5000,
      what: `${n} journal entries`,
      intervalMs: 10,
    });
  return { tailer, lines, done, records, metrics, waitLines };
}

const argvCalls = (file: string) =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as string[]);

test("JournalTailer: the journal of a real lifecycle yields the same records as the file log", async (t) => {
  const argvLog = path.join(await tempDir(t), "argv.jsonl");
  const f = follow(t, argvLog, "follow");
  const lines = await f.waitLines(ENTRIES.length);
  t.deepEqual(argvCalls(argvLog), [journalctlArgs("fail2ban.service")]);
  t.is(lines.at(-1)?.cursor, cursorOf(ENTRIES.length - 1));
  t.is(new Set(lines.map((l) => l.cursor)).size, ENTRIES.length);

  // What the monitor acts on (everything but lines ignored as chatter), in order, from both inputs.
  const acted = (records: readonly (LogRecord | undefined)[]) =>
    records.flatMap((r) => (r && r.type !== "ignored" ? [{ ...r, raw: undefined }] : []));
  const fileLog = readFileSync(new URL("./fixtures/f2b-1.0.2-lifecycle.log", import.meta.url), "utf8")
    .split("\n")
    .filter((l) => l.length > 0);
  const fromFile = acted(fileLog.map((l) => parseLogLine(l)));
  t.true(fromFile.filter((r) => r.type === "ban").length >= 10, "the lifecycle bans");
  t.deepEqual(acted(lines.map((l) => l.record)), fromFile);
  // systemd's own lines about the unit are entries too, but not fail2ban's
  t.true(
    lines.some(
      (l) => l.message === "Stopping fail2ban.service - Fail2Ban Service..." && l.record === undefined,
    ),
  );
});

test("JournalTailer: resumes after a persisted cursor, exactly the entries after it", async (t) => {
  const argvLog = path.join(await tempDir(t), "argv.jsonl");
  const from = 100;
  const f = follow(t, argvLog, "follow", cursorOf(from));
  const lines = await f.waitLines(ENTRIES.length - from - 1);
  t.deepEqual(argvCalls(argvLog), [journalctlArgs("fail2ban.service", cursorOf(from))]);
  t.is(lines[0]?.cursor, cursorOf(from + 1));
  t.is(lines.at(-1)?.cursor, cursorOf(ENTRIES.length - 1));
});

test("JournalTailer: when journalctl exits it is restarted after the last cursor, nothing read twice", async (t) => {
  const argvLog = path.join(await tempDir(t), "argv.jsonl");
  const f = follow(t, argvLog, "exit");
  await f.waitLines(ENTRIES.length);
  const calls = await waitFor(() => (argvCalls(argvLog).length >= 3 ? argvCalls(argvLog) : undefined), {
    timeoutMs: 5000,
    what: "journalctl restarted twice",
  });
  t.deepEqual(calls[0], journalctlArgs("fail2ban.service"));
  t.deepEqual(calls[1], journalctlArgs("fail2ban.service", cursorOf(ENTRIES.length - 1)));
  t.is(f.lines.length, ENTRIES.length);
  t.true(f.metrics.get("log_source_events_total", { event: "journal-restart" }) >= 2);
  t.true(f.records.some((r) => r.msg === "journalctl stopped; restarting it"));
});

test("JournalTailer: a missing journalctl is logged and retried, and close() still ends the loop", async (t) => {
  const argvLog = path.join(await tempDir(t), "argv.jsonl");
  const f = follow(t, argvLog, "follow", undefined, "/nonexistent/journalctl");
  const record = await waitFor(() => f.records.find((r) => r.msg === "journalctl stopped; restarting it"), {
    timeoutMs: 5000,
    what: "the failure to be logged",
  });
  t.regex(String(record.how), /ENOENT/);
  f.tailer.close();
  f.tailer.close();
  await f.done;
  t.deepEqual(f.lines, []);
});

test("JournalTailer: close() stops a following journalctl and ends the loop", async (t) => {
  const argvLog = path.join(await tempDir(t), "argv.jsonl");
  const f = follow(t, argvLog, "follow");
  await f.waitLines(ENTRIES.length);
  f.tailer.close();
  await f.done;
  t.is(f.lines.length, ENTRIES.length);
  t.is(f.metrics.get("log_source_events_total", { event: "journal-restart" }), 0);
});
