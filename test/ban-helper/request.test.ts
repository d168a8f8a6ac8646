import test from "ava";
import { checkRequest, type Refusal, type RequestPolicy } from "../../src/ban-helper/request.js";
import { NeverBanList } from "../../src/policy/never-ban.js";

const policy: RequestPolicy = {
  jails: new Set(["f2bz", "sshd"]),
  neverBan: NeverBanList.create({ entries: ["203.0.113.0/28"], hostAddresses: ["198.51.100.200"] }),
};
const check = (line: string | Buffer, p = policy) =>
  checkRequest(typeof line === "string" ? Buffer.from(line, "latin1") : line, p);

test("a well-formed request passes with canonical, de-duplicated addresses", (t) => {
  t.deepEqual(check("BAN f2bz 192.0.2.1"), { ok: true, verb: "BAN", jail: "f2bz", ips: ["192.0.2.1"] });
  t.deepEqual(check("UNBAN sshd 2001:DB8:0:0::1 192.0.2.1 2001:db8::1 ::ffff:192.0.2.1"), {
    ok: true,
    verb: "UNBAN",
    jail: "sshd",
    ips: ["2001:db8::1", "192.0.2.1"],
  });
  const hundred = Array.from({ length: 100 }, (_, i) => `192.0.2.${i + 1}`).join(" ");
  t.true(check(`BAN f2bz ${hundred}`).ok);
});

test("an empty jail list allows no jail: `UNBAN sshd` must not lift fail2ban's own bans", (t) => {
  const none = { ...policy, jails: new Set<string>() };
  t.deepEqual(check("BAN any-jail 192.0.2.1", none), {
    ok: false,
    code: "jail-not-allowed",
    reason: "jail not allowed 'any-jail'",
  });
  t.deepEqual(check("UNBAN sshd 192.0.2.1", none), {
    ok: false,
    code: "jail-not-allowed",
    reason: "jail not allowed 'sshd'",
  });
});

test("every malformed or forbidden request is refused with a short reason", (t) => {
  const cases: [string | Buffer, Refusal, string][] = [
    ["", "empty", "empty request"],
    ["ban f2bz 192.0.2.1", "unknown-verb", "unknown verb 'ban'"],
    ["PING", "unknown-verb", "unknown verb 'PING'"],
    ["BAN", "missing-jail", "missing jail"],
    ["BAN f2bz", "missing-address", "missing address"],
    ["BAN  f2bz 192.0.2.1", "malformed", "malformed request, expected single spaces"],
    ["BAN f2bz 192.0.2.1 ", "malformed", "malformed request, expected single spaces"],
    [" BAN f2bz 192.0.2.1", "malformed", "malformed request, expected single spaces"],
    ["BAN\tf2bz\t192.0.2.1", "not-printable", "not printable ascii"],
    ["BAN f2bz 192.0.2.1\r", "not-printable", "not printable ascii"],
    ["BAN f2bz 192.0.2.1\0", "not-printable", "not printable ascii"],
    [Buffer.from("BAN f2bz 192.0.2.１", "utf8"), "not-printable", "not printable ascii"],
    ["BAN f2b\xe9 192.0.2.1", "not-printable", "not printable ascii"],
    ["BAN -x 192.0.2.1", "invalid-jail", "invalid jail '-x'"],
    ["BAN ../etc 192.0.2.1", "invalid-jail", "invalid jail '../etc'"],
    ["BAN web-01 192.0.2.1", "jail-not-allowed", "jail not allowed 'web-01'"],
    ["BAN f2bz 192.0.2.1 extra words", "invalid-address", "not an ip address 'extra'"],
    ["BAN f2bz 1.2.3.4;touch /tmp/x", "invalid-address", "not an ip address '1.2.3.4;touch'"],
    ["BAN f2bz $(id)", "invalid-address", "not an ip address '$(id)'"],
    ["BAN f2bz `id`", "invalid-address", "not an ip address '`id`'"],
    ["BAN f2bz 192.0.2.1|id", "invalid-address", "not an ip address '192.0.2.1|id'"],
    ["BAN f2bz it's", "invalid-address", "not an ip address 'it\\'s'"],
    ["BAN f2bz 999.1.1.1", "invalid-address", "not an ip address '999.1.1.1'"],
    ["BAN f2bz --report-absent", "invalid-address", "not an ip address '--report-absent'"],
    ["BAN f2bz 192.0.2.0/24", "invalid-address", "cidr not allowed '192.0.2.0/24'"],
    ["BAN f2bz 0.0.0.0/0", "invalid-address", "cidr not allowed '0.0.0.0/0'"],
    ["BAN f2bz fe80::1%eth0", "invalid-address", "zone id not allowed 'fe80::1%eth0'"],
    ["BAN f2bz 127.0.0.1", "never-ban", "never-ban address '127.0.0.1'"],
    ["BAN f2bz ::1", "never-ban", "never-ban address '::1'"],
    ["BAN f2bz ::ffff:127.0.0.1", "never-ban", "never-ban address '::ffff:127.0.0.1'"],
    ["BAN f2bz 0.0.0.0", "never-ban", "never-ban address '0.0.0.0'"],
    ["BAN f2bz 203.0.113.5", "never-ban", "never-ban address '203.0.113.5'"],
    ["BAN f2bz 198.51.100.200", "never-ban", "never-ban address '198.51.100.200'"],
    ["BAN f2bz 192.0.2.1 127.0.0.1", "never-ban", "never-ban address '127.0.0.1'"],
    [`BAN f2bz ${"9".repeat(70)}`, "invalid-address", `too long '${"9".repeat(40)}...'`],
  ];
  for (const [line, code, reason] of cases)
    t.deepEqual(check(line), { ok: false, code, reason }, String(line));
  const many = Array.from({ length: 101 }, (_, i) => `192.0.2.${i + 1}`).join(" ");
  t.deepEqual(check(`BAN f2bz ${many}`), {
    ok: false,
    code: "too-many-addresses",
    reason: "too many addresses, at most 100",
  });
});
