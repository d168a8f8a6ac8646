import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { hostOf, resolveEntries } from "../../src/policy/never-ban-entries.js";

test("hostOf takes the host of a tcp endpoint, none of ipc or a wildcard", (t) => {
  t.is(hostOf("tcp://pub1.example.net:5680"), "pub1.example.net");
  t.is(hostOf("tcp://192.0.2.1:5680"), "192.0.2.1");
  t.is(hostOf("tcp://[2001:db8::1]:5680"), "2001:db8::1");
  t.is(hostOf("tcp://*:5680"), undefined);
  t.is(hostOf("ipc:///run/f2bz/feed"), undefined);
});

test("resolveEntries keeps addresses and ranges (host bits zeroed) and resolves names", async (t) => {
  const resolved = await resolveEntries(
    // Only names /etc/hosts answers: tests do not ask a DNS server.
    ["192.0.2.10", "127.0.0.1/8", "2001:DB8::/32", "localhost"],
    "ignoreip entry",
  );
  t.true(resolved.entries.includes("127.0.0.1"), "localhost resolves through /etc/hosts");
  t.deepEqual(
    resolved.entries.filter((e) => e !== "127.0.0.1" && e !== "::1"),
    ["192.0.2.10", "127.0.0.0/8", "2001:db8::/32"],
  );
  t.deepEqual(resolved.unprotected, []);
});

test("resolveEntries: a malformed entry is unprotected (said, never silently dropped), or an error naming it when strict", async (t) => {
  t.deepEqual(await resolveEntries(["10.0.0.0/33", "file:/etc/x"], "ignoreip entry"), {
    entries: [],
    unprotected: ["10.0.0.0/33", "file:/etc/x"],
  });
  const error = await t.throwsAsync(resolveEntries(["10.0.0.0/33"], "subscriber.peers entry", true), {
    instanceOf: F2bzError,
  });
  t.is(error.code, "CONFIG_INVALID");
  t.regex(error.message, /^subscriber\.peers entry '10\.0\.0\.0\/33' is invalid \(/);
});
