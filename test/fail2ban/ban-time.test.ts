import test from "ava";
import { parseBanTimeAnswer, parseIncreaseBan } from "../../src/fail2ban/ban-time.js";

// Real lines of fail2ban 1.0.2 with bantime.increment (research/fail2ban-lab-findings.md and
// test/fail2ban/fixtures/f2b-1.0.2-flush-notice.log.1).
const LAB =
  "2026-11-29 00:43:17,425 fail2ban.observer       [18776]: NOTICE  [exp-5s] Increase Ban 192.0.2.56 (2 # 10s -> 2026-11-29 00:43:27)";
const FIXTURE =
  "2026-11-29 01:30:56,439 fail2ban.observer       [9362]: NOTICE  [nginx-4xx] Increase Ban 192.0.2.56 (2 # 4s -> 2026-11-29 01:30:59)";

test("an Increase Ban line gives the jail, the address, the ban count and the whole duration", (t) => {
  t.deepEqual(parseIncreaseBan(LAB), { jail: "exp-5s", ip: "192.0.2.56", count: 2, durationMs: 10_000 });
  t.deepEqual(parseIncreaseBan(`${FIXTURE}\n`), {
    jail: "nginx-4xx",
    ip: "192.0.2.56",
    count: 2,
    durationMs: 4_000,
  });
});

test("durations in fail2ban's seconds2str units add up", (t) => {
  const line = (d: string) =>
    `2026-11-29 00:43:17,425 fail2ban.observer       [18776]: NOTICE  [sshd] Increase Ban 2001:db8::1 (5 # ${d} -> 2026-12-01 00:43:27)`;
  t.is(parseIncreaseBan(line("1d 2h 30m"))?.durationMs, 86_400_000 + 2 * 3_600_000 + 30 * 60_000);
  t.is(parseIncreaseBan(line("1w"))?.durationMs, 7 * 86_400_000);
  t.is(parseIncreaseBan(line("1y 2.5s"))?.durationMs, 365 * 86_400_000 + 2_500);
});

test("anything short of the exact shape is not an increase", (t) => {
  const bad = [
    "2026-11-29 00:43:17,395 fail2ban.actions        [18776]: NOTICE  [exp-5s] Ban 192.0.2.56",
    LAB.replace("10s", "10"),
    LAB.replace("10s", "0s"),
    LAB.replace("10s", "10x"),
    LAB.replace(" (2 # ", " (two # "),
    `${LAB} trailing`,
    LAB.replace(" -> 2026-11-29 00:43:27)", ")"),
  ];
  for (const line of bad) t.is(parseIncreaseBan(line), undefined, line);
});

test("fail2ban-client's bantime answer: seconds, negative meaning forever", (t) => {
  t.is(parseBanTimeAnswer("1234\n"), 1_234_000);
  t.is(parseBanTimeAnswer("-1"), "permanent");
  for (const bad of ["", "0", "1h", "12.5", "ERROR", "600 600"])
    t.is(parseBanTimeAnswer(bad), undefined, bad);
});
