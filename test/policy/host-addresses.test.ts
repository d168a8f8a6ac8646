import path from "node:path";
import test from "ava";
import { hostAwareNeverBan } from "../../src/ban-helper/never-ban.js";
import { BanHelperServer } from "../../src/ban-helper/server.js";
import type { SubscriberConfig } from "../../src/config/schema.js";
import { HostAddressWatch } from "../../src/policy/host-addresses.js";
import { NeverBanSource } from "../../src/subscriber/never-ban-source.js";
import { memoryLogger, openDir, rawRequest } from "../ban-helper/helpers.js";
import { waitFor } from "../harness/wait.js";

test("HostAddressWatch reads the addresses again each interval and reports a change once", async (t) => {
  let addresses = ["192.0.2.1", "2001:DB8::1%eth0"];
  let fail = false;
  const changes: string[][] = [];
  const watch = new HostAddressWatch({
    read: () => {
      if (fail) throw new Error("getifaddrs failed");
      return addresses;
    },
    intervalMs: 20,
    onChange: (next) => changes.push([...next]),
  });
  t.teardown(() => watch.close());
  t.deepEqual(watch.addresses, ["192.0.2.1", "2001:db8::1"], "canonical, zone dropped");
  t.false(watch.refresh(), "nothing changed");
  addresses = ["192.0.2.1", "198.51.100.7", "2001:db8::1"];
  await waitFor(() => (changes.length > 0 ? true : undefined), {
    timeoutMs: 10_000,
    what: "the periodic refresh to see the new address",
  });
  t.deepEqual(changes, [["192.0.2.1", "198.51.100.7", "2001:db8::1"]]);
  fail = true;
  t.false(watch.refresh(), "a failed read keeps the last list");
  t.deepEqual(watch.addresses, ["192.0.2.1", "198.51.100.7", "2001:db8::1"]);
});

test("the ban-helper refuses a host address that appeared after it started, once it is read again", async (t) => {
  let addresses = ["192.0.2.1"];
  const { logger, lines } = memoryLogger();
  const neverBan = hostAwareNeverBan(["203.0.113.0/28"], logger, { read: () => addresses, intervalMs: 20 });
  t.teardown(() => neverBan.close());
  const dir = await openDir(t, "f2bz-helper");
  const socket = path.join(dir, "ban.sock");
  const helper = await BanHelperServer.listen({
    socket,
    stateDir: path.join(dir, "state"),
    executor: { ban: async (_j, ips) => ips.length, unban: async (_j, ips) => ips.length },
    jails: ["f2bz"],
    neverBan: neverBan.list,
    logger,
  });
  t.teardown(() => helper.close());
  t.is(await rawRequest(socket, "BAN f2bz 192.0.2.1\n"), "ERR never-ban address '192.0.2.1'\n");
  t.is(await rawRequest(socket, "BAN f2bz 198.51.100.7\n"), "OK 1\n", "not this host's address yet");

  // DHCP, SLAAC or a VPN gives the host a new address while the helper runs.
  addresses = ["192.0.2.1", "198.51.100.8"];
  await waitFor(() => lines.find((l) => l.msg === "host addresses changed"), {
    timeoutMs: 10_000,
    what: "the helper to read the host addresses again",
  });
  t.is(await rawRequest(socket, "BAN f2bz 198.51.100.8\n"), "ERR never-ban address '198.51.100.8'\n");
  t.is(await rawRequest(socket, "BAN f2bz 203.0.113.1\n"), "ERR never-ban address '203.0.113.1'\n");
  t.is(await rawRequest(socket, "BAN f2bz 192.0.2.1\n"), "ERR never-ban address '192.0.2.1'\n");
});

test("the subscriber's never-ban list takes in a host address that appeared after it started", async (t) => {
  let addresses = ["192.0.2.1"];
  const { logger } = memoryLogger();
  const settings = {
    neverBan: ["203.0.113.0/28"],
    peers: [],
    action: { type: "log", dryRun: false },
  } as unknown as SubscriberConfig;
  const source = await NeverBanSource.open(settings, [], logger, 60_000, {
    read: () => addresses,
    intervalMs: 20,
  });
  t.teardown(() => source.close());
  t.true(source.current.neverBan.contains("192.0.2.1"));
  t.false(source.current.neverBan.contains("198.51.100.8"));
  addresses = ["192.0.2.1", "198.51.100.8"];
  await waitFor(() => (source.current.neverBan.contains("198.51.100.8") ? true : undefined), {
    timeoutMs: 10_000,
    what: "the subscriber to read the host addresses again",
  });
  t.true(source.current.neverBan.contains("203.0.113.1"), "configured entries stay");
});
