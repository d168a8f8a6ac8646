import test from "ava";
import { parseAddress } from "../../src/policy/address.js";

const accepted: [input: string, ip: string, family: 4 | 6, prefix: number][] = [
  ["203.0.113.5", "203.0.113.5", 4, 32],
  ["2001:0DB8::0001", "2001:db8::1", 6, 128],
  ["2001:db8:0:0:0:0:0:1", "2001:db8::1", 6, 128],
  ["::ffff:192.0.2.1", "192.0.2.1", 4, 32],
  ["::FFFF:c000:0201", "192.0.2.1", 4, 32],
  ["0:0:0:0:0:ffff:7f00:1", "127.0.0.1", 4, 32],
  ["0.0.0.0", "0.0.0.0", 4, 32], // parses; refused by the never-ban list, see never-ban.test.ts
  ["::", "::", 6, 128],
];

for (const [input, ip, family, prefix] of accepted) {
  test(`parseAddress accepts ${JSON.stringify(input)} as ${ip}`, (t) => {
    t.deepEqual(parseAddress(input), { ok: true, ip, family, prefix });
  });
}

const acceptedCidr: [input: string, ip: string, family: 4 | 6, prefix: number][] = [
  ["198.51.100.0/24", "198.51.100.0/24", 4, 24],
  ["198.51.100.128/25", "198.51.100.128/25", 4, 25],
  ["198.51.100.7/32", "198.51.100.7", 4, 32],
  ["2001:DB8:0:1::/64", "2001:db8:0:1::/64", 6, 64],
  ["2001:db8::1/128", "2001:db8::1", 6, 128],
  ["::ffff:198.51.100.0/120", "198.51.100.0/24", 4, 24],
];

for (const [input, ip, family, prefix] of acceptedCidr) {
  test(`parseAddress with allowCidr accepts ${input} as ${ip}`, (t) => {
    t.deepEqual(parseAddress(input, { allowCidr: true }), { ok: true, ip, family, prefix });
  });
}

const rejected: [input: string, reason: string, allowCidr: boolean][] = [
  ["010.1.1.1", "not an ip address", false],
  ["1.2.3", "not an ip address", false],
  ["127.1", "not an ip address", false],
  ["0x7f.0.0.1", "not an ip address", false],
  ["256.1.1.1", "not an ip address", false],
  ["fe80::1%eth0", "zone id not allowed", false],
  ["[2001:db8::1]", "brackets not allowed", false],
  ["1.2.3.4\n", "whitespace not allowed", false],
  [" 1.2.3.4", "whitespace not allowed", false],
  ["1.2.3.4 junk", "whitespace not allowed", false],
  ["1.2.3.4junk", "not an ip address", false],
  ["1.2.3.4;rm", "not an ip address", false],
  ["", "empty", false],
  [`${"1".repeat(65)}`, "too long", false],
  ["198.51.100.0/24", "cidr not allowed", false],
  ["0.0.0.0/0", "prefix /0 not allowed", true],
  ["::/0", "prefix /0 not allowed", true],
  ["10.0.0.0/8", "prefix too short", true],
  ["2001:db8::/32", "prefix too short", true],
  ["198.51.100.1/24", "host bits set", true],
  ["2001:db8::1/64", "host bits set", true],
  ["::ffff:198.51.100.0/64", "host bits set", true],
  ["198.51.100.0/33", "invalid prefix", true],
  ["2001:db8::/129", "invalid prefix", true],
  ["198.51.100.0/024", "invalid prefix", true],
  ["198.51.100.0/", "invalid prefix", true],
  ["198.51.100.0/24/24", "invalid prefix", true],
  ["/24", "not an ip address", true],
];

for (const [input, reason, allowCidr] of rejected) {
  test(`parseAddress rejects ${JSON.stringify(input)}${allowCidr ? " (cidr allowed)" : ""}`, (t) => {
    t.deepEqual(parseAddress(input, { allowCidr }), { ok: false, reason });
  });
}

test("parseAddress rejects a non-string without throwing", (t) => {
  t.deepEqual(parseAddress(42 as unknown as string), { ok: false, reason: "not a string" });
});
