import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { checkTarget, hostAddresses, NeverBanList } from "../../src/policy/never-ban.js";

const HOST = ["198.51.100.20", "2001:db8:5::20"];
const list = NeverBanList.create({
  entries: ["192.0.2.10", "10.0.0.0/8", "2001:db8:ffff::/48"],
  hostAddresses: HOST,
});

const refused: [input: string, reason: string, allowCidr: boolean][] = [
  ["0.0.0.0", "never-ban", false],
  ["::", "never-ban", false],
  ["127.0.0.1", "never-ban", false],
  ["127.200.1.1", "never-ban", false],
  ["::1", "never-ban", false],
  ["::ffff:127.0.0.1", "never-ban", false],
  ["169.254.1.1", "never-ban", false],
  ["fe80::1", "never-ban", false],
  ["224.0.0.1", "never-ban", false],
  ["255.255.255.255", "never-ban", false],
  ["ff02::1", "never-ban", false],
  ["192.0.2.10", "never-ban", false], // configured address
  ["10.20.30.40", "never-ban", false], // inside a configured range
  ["::ffff:10.20.30.40", "never-ban", false],
  ["2001:db8:ffff:1::9", "never-ban", false],
  ["198.51.100.20", "never-ban", false], // the host's own addresses
  ["2001:DB8:5:0::20", "never-ban", false],
  ["10.1.2.0/24", "never-ban", true], // a range inside a configured range
  ["192.0.2.0/24", "never-ban", true], // a range containing a configured address
  ["198.51.100.0/24", "never-ban", true], // a range containing a host address
  ["2001:db8:5::/64", "never-ban", true],
  ["127.0.0.0/24", "never-ban", true],
  ["::/64", "never-ban", true], // contains ::, ::1 and all of ::ffff:0:0/96
  ["0.0.0.0/0", "prefix /0 not allowed", true],
  ["::/0", "prefix /0 not allowed", true],
  ["10.0.0.0/8", "prefix too short", true],
  ["198.51.100.0/24", "cidr not allowed", false],
  ["fe80::1%eth0", "zone id not allowed", false],
];

for (const [input, reason, allowCidr] of refused) {
  test(`checkTarget refuses ${input}${allowCidr ? " (cidr allowed)" : ""}`, (t) => {
    t.deepEqual(checkTarget(input, list, { allowCidr }), { ok: false, reason });
  });
}

const passed: [input: string, ip: string, allowCidr: boolean][] = [
  ["203.0.113.5", "203.0.113.5", false],
  ["::ffff:203.0.113.5", "203.0.113.5", false],
  ["2001:0DB8::0001", "2001:db8::1", false],
  ["11.0.0.1", "11.0.0.1", false],
  ["203.0.113.0/24", "203.0.113.0/24", true],
  ["2001:db8:6::/64", "2001:db8:6::/64", true],
];

for (const [input, ip, allowCidr] of passed) {
  test(`checkTarget passes ${input}`, (t) => {
    const result = checkTarget(input, list, { allowCidr });
    t.true(result.ok);
    t.is(result.ok && result.ip, ip);
  });
}

test("an empty list still holds the built-in ranges", (t) => {
  const empty = NeverBanList.create({});
  t.true(empty.contains("127.0.0.1"));
  t.true(empty.contains("::ffff:169.254.0.1"));
  t.false(empty.contains("203.0.113.5"));
  t.true(empty.overlaps("0.0.0.0/8"));
  t.false(empty.overlaps("203.0.113.0/24"));
});

test("contains and overlaps fail closed on input that is not an address", (t) => {
  const empty = NeverBanList.create({});
  t.true(empty.contains("not-an-ip"));
  t.true(empty.contains("203.0.113.0/24"));
  t.true(empty.overlaps("203.0.113.1/24"));
});

test("a broad never-ban range is accepted in configuration", (t) => {
  const broad = NeverBanList.create({ entries: ["0.0.0.0/0"] });
  t.true(broad.contains("203.0.113.5"));
  t.false(broad.contains("2001:db8::1"));
});

for (const entry of ["10.0.0.1/8", "not-an-ip", "fe80::1%eth0", "10.0.0.0/33"]) {
  test(`an invalid never-ban entry ${JSON.stringify(entry)} is a configuration error`, (t) => {
    const error = t.throws(() => NeverBanList.create({ entries: [entry] }), { instanceOf: F2bzError });
    t.is(error?.code, "CONFIG_INVALID");
    t.regex(error?.message ?? "", /^never-ban entry '.*' is invalid \(.+\)$/);
  });
}

test("hostAddresses lists this host's canonical addresses, loopback included", (t) => {
  const own = hostAddresses();
  t.true(own.includes("127.0.0.1"));
  for (const ip of own) t.false(ip.includes("%") || ip.includes("/"));
  const local = NeverBanList.create({ hostAddresses: own });
  for (const ip of own) t.deepEqual(checkTarget(ip, local), { ok: false, reason: "never-ban" });
});
