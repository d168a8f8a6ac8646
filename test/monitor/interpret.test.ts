import { readFileSync } from "node:fs";
import test from "ava";
import { parseLogLine } from "../../src/fail2ban/log-line.js";
import { Metrics } from "../../src/metrics/registry.js";
import { type InterpreterState, LogInterpreter, type MonitorEvent } from "../../src/monitor/interpret.js";

const fixtureLines = (...names: string[]) =>
  names.flatMap((name) =>
    readFileSync(new URL(`../fail2ban/fixtures/${name}`, import.meta.url), "utf8")
      .split("\n")
      .filter((l) => l.length > 0),
  );

/** The line's own time (fail2ban's local time, read as UTC: only differences matter here). */
const lineTime = (line: string) =>
  Date.parse(`${line.slice(0, 10)}T${line.slice(11, 19)}.${line.slice(20, 23)}Z`);

/**
 * Replays lines as the monitor would tail them live: the clock is each line's own time, and the
 * daemon's timer (`release()`) runs before each line and once at the end, an hour later.
 */
function replay(
  lines: string[],
  options: { holdUnbanMs?: number; ignoreJails?: string[]; metrics?: Metrics } = {},
) {
  let now = 0;
  const interpreter = new LogInterpreter({ ...options, now: () => now });
  const events: MonitorEvent[] = [];
  for (const line of lines) {
    now = lineTime(line);
    events.push(...interpreter.release());
    const record = parseLogLine(line);
    if (record) events.push(...interpreter.push(record));
  }
  now += 3_600_000;
  events.push(...interpreter.release());
  return { events, interpreter };
}

const short = (events: MonitorEvent[]) => events.map((e) => `${e.kind} ${e.jail} ${e.ip}`);

test("real 1.0.2 lifecycle: only real bans and unbans; no stop burst, no restore, no per-jail flush", (t) => {
  const metrics = new Metrics("monitor");
  const { events } = replay(fixtureLines("f2b-1.0.2-lifecycle.log"), { metrics });
  t.deepEqual(short(events), [
    "ban sshd-test 192.0.2.10",
    "ban web-01 2001:db8::10",
    "ban sshd-test 203.0.113.5",
    "ban sshd-test 198.51.100.1",
    "ban sshd-test 198.51.100.2",
    "ban web-01 2001:db8::abcd",
    "ban app_2.v6 192.0.2.30",
    "ban app_2.v6 2001:db8:1::30",
    "unban sshd-test 198.51.100.2", // `set sshd-test unbanip`
    // reload --restart web-01: 2 Unbans, 2 Restore Bans — nothing
    // stop app_2.v6: 2 Unbans before `Jail 'app_2.v6' stopped` — held, then dropped
    "ban web-01 192.0.2.21",
    // restart --unban web-01: 3 Unbans — nothing
    "ban web-01 192.0.2.22",
    // server stop: 4 Unbans; start: 6 Restore Bans — nothing
    "ban sshd-test 192.0.2.40",
    "unban sshd-test 192.0.2.40", // `set sshd-test unbanip`
    // reload --restart (all): 6 Unbans, 6 Restore Bans — nothing
    "ban sshd-test 192.0.2.41",
    // server stop: 7 Unbans — nothing
  ]);
  t.is(metrics.get("log_lines_suppressed_total", { reason: "stop-flush" }), 2 + 3 + 4 + 6 + 7);
  t.is(metrics.get("log_lines_suppressed_total", { reason: "held-dropped" }), 2);
  t.is(metrics.get("log_lines_suppressed_total", { reason: "restore-ban" }), 2 + 6 + 6);
  t.is(metrics.get("log_lines_suppressed_total", { reason: "already-banned" }), 1);
});

test("real 1.0.2 flush, unban --all, rotation, and a restart at loglevel NOTICE", (t) => {
  const { events } = replay(fixtureLines("f2b-1.0.2-flush-notice.log.1", "f2b-1.0.2-flush-notice.log"));
  t.deepEqual(short(events), [
    "ban nginx-4xx 192.0.2.56",
    "unban nginx-4xx 192.0.2.56", // expiry (bantime 2 s); propagated before the next ban of the jail
    "ban nginx-4xx 192.0.2.56", // followed by Increase Ban: nothing
    "ban sshd-test 198.51.100.7",
    "ban sshd-test 198.51.100.8",
    // restart sshd-test with actionflush: Flush line, 2 Unbans, 2 Restore Bans — nothing
    "ban sshd-test 198.51.100.9",
    // unban --all: 4 real Unbans, held; sshd-test's go out before its next ban
    "unban sshd-test 198.51.100.7",
    "unban sshd-test 198.51.100.8",
    "unban sshd-test 198.51.100.9",
    "ban sshd-test 198.51.100.10",
    // mv + flushlogs: the new file continues
    "ban sshd-test 198.51.100.11",
    // loglevel NOTICE, stop + start: no lifecycle line at all. The stop's Unbans are held and dropped
    // when the new pid shows up; nginx-4xx's real unban (from unban --all, < 5 s before) goes with them.
    "ban sshd-test 198.51.100.12",
    // The final stop at NOTICE has no marker and no restart after it: indistinguishable from real
    // unbans, so they are propagated. Hence loglevel INFO is required for exact results.
    "unban sshd-test 198.51.100.10",
    "unban sshd-test 198.51.100.11",
    "unban sshd-test 198.51.100.12",
  ]);
});

test("real syslog datagrams: ban, ban, unban; the shutdown's unban is dropped", (t) => {
  const lines = readFileSync(
    new URL("../fail2ban/fixtures/f2b-1.0.2-syslog.datagrams", import.meta.url),
    "utf8",
  )
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as string);
  const interpreter = new LogInterpreter({ holdUnbanMs: 60_000 });
  const events = lines.flatMap((line) => {
    const record = parseLogLine(line);
    return record ? interpreter.push(record) : [];
  });
  // The real unban is still held when `Shutdown in progress...` arrives, and goes out then.
  t.deepEqual(short(events), [
    "ban sshd-test 192.0.2.90",
    "ban sshd-test 2001:db8::90",
    "unban sshd-test 192.0.2.90",
  ]);
});

test("without a hold, the unbans of `stop <jail>` cannot be told apart and are propagated", (t) => {
  const { events } = replay(fixtureLines("f2b-1.0.2-lifecycle.log"), { holdUnbanMs: 0 });
  const unbans = short(events).filter((e) => e.startsWith("unban"));
  t.deepEqual(unbans, [
    "unban sshd-test 198.51.100.2",
    "unban app_2.v6 192.0.2.30",
    "unban app_2.v6 2001:db8:1::30",
    "unban sshd-test 192.0.2.40",
  ]);
});

test("ignoreJails: the cluster's own jail is never propagated", (t) => {
  const { events } = replay(fixtureLines("f2b-1.0.2-lifecycle.log"), { ignoreJails: ["sshd-test"] });
  t.false(events.some((e) => e.jail === "sshd-test"));
  t.is(events.length, 6);
});

const at = (time: string, message: string, pid = 100) =>
  `2026-11-29 ${time} fail2ban.${message.startsWith("[") ? "actions " : "server  "}       [${pid}]: ${message.startsWith("[") ? "NOTICE " : "INFO   "} ${message}`;

test("a slow per-jail stop: the hold counts from the jail's last unban", (t) => {
  const { events } = replay([
    at("10:00:00,000", "[sshd] Ban 192.0.2.1"),
    at("10:00:00,100", "[sshd] Ban 192.0.2.2"),
    at("10:00:10,000", "[sshd] Unban 192.0.2.1"),
    at("10:00:14,000", "[sshd] Unban 192.0.2.2"), // actions take 4 s each
    at("10:00:18,500", "Jail 'sshd' stopped"),
  ]);
  t.deepEqual(short(events), ["ban sshd 192.0.2.1", "ban sshd 192.0.2.2"]);
});

test("held unbans go out after the hold, in log order, and only those of jails that are due", (t) => {
  let now = 0;
  const interpreter = new LogInterpreter({ holdUnbanMs: 1000, now: () => now });
  const push = (line: string) => interpreter.push(parseLogLine(line)!);
  t.deepEqual(push(at("10:00:00,000", "[a] Unban 192.0.2.1")), []);
  now = 500;
  t.deepEqual(push(at("10:00:00,500", "[b] Unban 192.0.2.2")), []);
  t.deepEqual(push(at("10:00:00,500", "[a] Unban 192.0.2.3")), []);
  t.is(interpreter.nextReleaseAt(), 1500);
  now = 1499;
  t.deepEqual(interpreter.release(), []);
  now = 1500;
  t.deepEqual(short(interpreter.release()), ["unban a 192.0.2.1", "unban b 192.0.2.2", "unban a 192.0.2.3"]);
  t.is(interpreter.nextReleaseAt(), undefined);
});

test("a ban releases its jail's held unbans first, so a re-ban is never overtaken by an old unban", (t) => {
  const interpreter = new LogInterpreter({ holdUnbanMs: 60_000 });
  const push = (line: string) => short(interpreter.push(parseLogLine(line)!));
  t.deepEqual(push(at("10:00:00,000", "[sshd] Unban 192.0.2.1")), []);
  t.deepEqual(push(at("10:00:01,000", "[web] Unban 192.0.2.9")), []);
  t.deepEqual(push(at("10:00:02,000", "[sshd] Ban 192.0.2.1")), [
    "unban sshd 192.0.2.1",
    "ban sshd 192.0.2.1",
  ]);
  t.deepEqual(push(at("10:00:03,000", "Shutdown in progress...")), ["unban web 192.0.2.9"]);
});

test("reload --restart at loglevel NOTICE: a Restore Ban of the jail drops its held unbans", (t) => {
  const { events } = replay([
    at("10:00:00,000", "[sshd] Ban 192.0.2.1"),
    at("10:00:05,000", "[sshd] Unban 192.0.2.1"),
    at("10:00:05,100", "[sshd] Restore Ban 192.0.2.1"),
  ]);
  t.deepEqual(short(events), ["ban sshd 192.0.2.1"]);
});

test("a new server pid ends a stop even without any lifecycle line", (t) => {
  const { events } = replay([
    at("10:00:00,000", "[sshd] Ban 192.0.2.1", 100),
    at("10:00:00,000", "Stopping all jails", 100),
    at("10:00:01,000", "[sshd] Unban 192.0.2.1", 100),
    // killed before `Exiting Fail2ban`; the next server logs at NOTICE only
    at("10:00:03,000", "[sshd] Ban 192.0.2.2", 200),
    at("10:00:04,000", "[sshd] Unban 192.0.2.2", 200),
  ]);
  t.deepEqual(short(events), ["ban sshd 192.0.2.1", "ban sshd 192.0.2.2", "unban sshd 192.0.2.2"]);
});

test("the state survives a monitor restart in the middle of a stop burst", (t) => {
  const lines = fixtureLines("f2b-1.0.2-lifecycle.log");
  const cut = lines.findIndex((l) => l.includes("[sshd-test] Unban 203.0.113.5")); // inside the first stop
  t.true(cut > 0);
  let now = 0;
  const first = new LogInterpreter({ now: () => now });
  const events: MonitorEvent[] = [];
  const feed = (interpreter: LogInterpreter, part: string[]) => {
    for (const line of part) {
      now = lineTime(line);
      events.push(...interpreter.release());
      const record = parseLogLine(line);
      if (record) events.push(...interpreter.push(record));
    }
  };
  feed(first, lines.slice(0, cut));
  const saved = JSON.parse(JSON.stringify(first.snapshot())) as InterpreterState;
  t.true(saved.allStopping);
  const second = new LogInterpreter({ now: () => now }, saved);
  feed(second, lines.slice(cut));
  now += 3_600_000;
  events.push(...second.release());
  t.deepEqual(short(events), short(replay(lines).events));
});

test("a held unban survives a restart and is still dropped by the stop line read after it", (t) => {
  let now = 0;
  const first = new LogInterpreter({ holdUnbanMs: 1000, now: () => now });
  first.push(parseLogLine(at("10:00:00,000", "[sshd] Unban 192.0.2.1"))!);
  const saved = JSON.parse(JSON.stringify(first.snapshot())) as InterpreterState;
  t.is(saved.held.length, 1);
  now = 60_000; // the monitor was down a minute; the hold restarts on load
  const second = new LogInterpreter({ holdUnbanMs: 1000, now: () => now }, saved);
  t.deepEqual(second.release(), []);
  t.deepEqual(second.push(parseLogLine(at("10:00:00,500", "Jail 'sshd' stopped"))!), []);
  now = 70_000;
  t.deepEqual(second.release(), []);
});

test("a malformed snapshot loads as far as it is valid", (t) => {
  const state = {
    allStopping: "yes",
    restarted: [1, "a"],
    stopping: null,
    held: [{ jail: 2 }, null],
    pid: 1.5,
  };
  const interpreter = new LogInterpreter({}, state as unknown as InterpreterState);
  t.deepEqual(interpreter.snapshot(), { allStopping: false, restarted: ["a"], stopping: [], held: [] });
});
