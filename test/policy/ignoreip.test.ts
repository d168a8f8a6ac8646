import test from "ava";
import { networkOf } from "../../src/policy/address.js";
import { ignoreIpRanges, NeverBanList } from "../../src/policy/never-ban.js";

test("networkOf zeroes host bits as fail2ban's ignoreip allows them", (t) => {
  t.is(networkOf("127.0.0.1/8"), "127.0.0.0/8");
  t.is(networkOf("10.1.2.3/16"), "10.1.0.0/16");
  t.is(networkOf("192.0.2.7"), "192.0.2.7");
  t.is(networkOf("2001:DB8::1/32"), "2001:db8::/32");
  t.is(networkOf("fe80::1/10"), "fe80::/10");
  t.is(networkOf("10.0.0.0/0"), "0.0.0.0/0");
  for (const bad of [
    "x",
    "1.2.3.4/33",
    "1.2.3.4/",
    "1.2.3.4/a",
    "2001:db8::/129",
    "example.com",
    "file:/etc/x",
  ]) {
    t.is(networkOf(bad), undefined, bad);
  }
});

test("ignoreIpRanges keeps addresses and ranges, drops names and file lists", (t) => {
  const ranges = ignoreIpRanges([
    "127.0.0.1/8",
    "::1",
    "198.51.100.7/24",
    "trusted.example.com",
    "file:/etc/ok",
  ]);
  t.deepEqual(ranges, ["127.0.0.0/8", "::1", "198.51.100.0/24"]);
  const list = NeverBanList.create({ entries: ranges });
  t.true(list.contains("198.51.100.200"));
  t.false(list.contains("203.0.113.1"));
});
