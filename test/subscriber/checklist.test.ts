import test from "ava";
import { generateIdentity, type SecretIdentity } from "../../src/keys/identity.js";
import { Metrics } from "../../src/metrics/registry.js";
import { NeverBanList } from "../../src/policy/never-ban.js";
import { type SignedEvent, signEvent } from "../../src/protocol/signature.js";
import { Checklist, type ChecklistOptions, mapJail } from "../../src/subscriber/checklist.js";
import { SubscriberStore } from "../../src/subscriber/store.js";
import { tempDir } from "../helpers/temp-dir.js";
import { sign } from "./helpers.js";

const WINDOW = 120_000;
/** Fixed per run; the checklist's clock is injected, and every event below names its time. */
const NOW = Date.now();

let self: SecretIdentity;
let origin: SecretIdentity;
let other: SecretIdentity;
test.before(async () => {
  [self, origin, other] = await Promise.all([
    generateIdentity("self"),
    generateIdentity("web1"),
    generateIdentity("web2"),
  ]);
});

interface Bench {
  checklist: Checklist;
  metrics: Metrics;
  store: SubscriberStore;
  clock: { now: number };
  /** A second checklist on the same state file, as after a restart. */
  restart(): Checklist;
}

async function bench(t: import("ava").ExecutionContext, options: Partial<ChecklistOptions> = {}) {
  const dir = await tempDir(t, "f2bz-checklist-");
  const store = new SubscriberStore(dir);
  t.teardown(() => store.close());
  const metrics = new Metrics("subscriber");
  const clock = { now: NOW };
  const make = () =>
    new Checklist({
      self: self.nodeId,
      store,
      local: {
        current: {
          neverBan: NeverBanList.create({
            // subscriber.neverBan, a publisher's address and an ignoreip range, as the daemon merges them
            entries: ["192.0.2.10", "10.0.0.0/8", "2001:db8:ffff::/48"],
            hostAddresses: ["198.51.100.250"],
          }),
          jails: undefined,
        },
      },
      origins: undefined,
      allowCidr: false,
      target: { jail: "same" },
      metrics,
      windowMs: WINDOW,
      now: () => clock.now,
      ...options,
    });
  return { checklist: make(), metrics, store, clock, restart: make } satisfies Bench;
}

const live = (c: Checklist, e: SignedEvent) => c.check(e.payload, e.signature, "live");
const snap = (c: Checklist, e: SignedEvent) => c.check(e.payload, e.signature, "snapshot");
const reasonOf = (d: Awaited<ReturnType<Checklist["check"]>>) => (d.ok ? "accepted" : d.reason);

test("a signed ban inside the window passes once, with its jail mapped", async (t) => {
  const b = await bench(t, { target: { jail: "f2bz" } });
  const event = await sign(origin, { seq: 1, ip: "203.0.113.5", time: NOW - 1000 });
  const decision = await live(b.checklist, event);
  t.true(decision.ok);
  if (decision.ok) {
    t.is(decision.jail, "f2bz");
    t.is(decision.event.ip, "203.0.113.5");
    t.is(decision.event.origin, origin.nodeId);
  }
  t.is(b.metrics.get("events_accepted_total", { source: "live" }), 1);
});

test("signature: a flipped byte in payload or signature, or a short signature, is refused", async (t) => {
  const b = await bench(t);
  const event = await sign(origin, { seq: 1, ip: "203.0.113.5", time: NOW });
  const payload = Buffer.from(event.payload);
  payload[payload.indexOf("203.0.113.5") + 10] = "6".charCodeAt(0); // 203.0.113.6: a different target
  t.is(reasonOf(await b.checklist.check(payload, event.signature, "live")), "signature");
  const signature = Buffer.from(event.signature);
  signature[0]! ^= 1;
  t.is(reasonOf(await b.checklist.check(event.payload, signature, "live")), "signature");
  t.is(
    reasonOf(await b.checklist.check(event.payload, event.signature.subarray(0, 63), "live")),
    "signature",
  );
  t.is(b.metrics.get("events_dropped_total", { reason: "signature" }), 3);
  t.true((await live(b.checklist, event)).ok, "the untouched event still passes");
});

test("echo: this node's own events coming back are dropped", async (t) => {
  const b = await bench(t);
  const own = await sign(self, { seq: 1, ip: "203.0.113.5", time: NOW });
  t.is(reasonOf(await live(b.checklist, own)), "echo");
  t.is(reasonOf(await snap(b.checklist, own)), "echo");
  t.is(b.metrics.get("events_dropped_total", { reason: "echo" }), 2);
});

test("window: stale and future live events are refused", async (t) => {
  const b = await bench(t);
  const stale = await sign(origin, { seq: 1, ip: "203.0.113.5", time: NOW - WINDOW - 1 });
  const future = await sign(origin, { seq: 2, ip: "203.0.113.6", time: NOW + WINDOW + 1 });
  t.is(reasonOf(await live(b.checklist, stale)), "stale");
  t.is(reasonOf(await live(b.checklist, future)), "future");
  t.is(reasonOf(await snap(b.checklist, future)), "future", "a snapshot cannot carry a future event either");
});

test("seen-cache: the same event through a second publisher, or after a restart, is a duplicate", async (t) => {
  const b = await bench(t);
  const event = await sign(origin, { seq: 7, ip: "203.0.113.5", time: NOW });
  t.true((await live(b.checklist, event)).ok);
  t.is(reasonOf(await live(b.checklist, event)), "duplicate", "second publisher, same bytes");
  t.is(reasonOf(await snap(b.checklist, event)), "duplicate", "again in a snapshot");
  t.is(reasonOf(await live(b.restart(), event)), "duplicate", "after a restart (persisted seen ids)");
  t.is(b.metrics.get("events_accepted_total", { source: "live" }), 1);
  t.is(b.metrics.get("events_dropped_total", { reason: "duplicate" }), 3);
});

test("seen-cache: one, persisted: a replay at the window's edge is a duplicate after housekeeping and a restart", async (t) => {
  const b = await bench(t);
  const unban = await sign(origin, { seq: 8, kind: "unban", ip: "203.0.113.5", time: NOW });
  t.true((await live(b.checklist, unban)).ok);
  b.clock.now = NOW + WINDOW; // still inside the window: only the seen-cache stops the replay
  b.store.pruneSeen(b.clock.now - 2 * WINDOW); // what the daemon's housekeeping forgets
  t.is(reasonOf(await live(b.restart(), unban)), "duplicate");
  b.clock.now = NOW + WINDOW + 1;
  t.is(reasonOf(await live(b.restart(), unban)), "stale", "past the window the event is refused anyway");
});

test("snapshot: an entry older than the window passes while its ban lasts, once", async (t) => {
  const b = await bench(t);
  const old = await sign(origin, {
    seq: 3,
    ip: "203.0.113.9",
    time: NOW - 3_600_000,
    expires: NOW + 3_600_000,
  });
  t.is(reasonOf(await live(b.checklist, old)), "stale", "live, it would be a replay");
  t.true((await snap(b.checklist, old)).ok);
  t.is(reasonOf(await snap(b.checklist, old)), "duplicate", "the next snapshot carries it again");
  // Seen ids of bans are kept until the ban expires, not just two windows.
  b.store.pruneSeen(NOW + 30 * 60_000 - 2 * WINDOW);
  t.is(reasonOf(await snap(b.restart(), old)), "duplicate");

  const expired = await sign(origin, { seq: 4, ip: "203.0.113.10", time: NOW - 7_200_000, expires: NOW - 1 });
  t.is(reasonOf(await snap(b.checklist, expired)), "expired");
  const unban = await sign(origin, { seq: 5, ip: "203.0.113.11", kind: "unban", time: NOW - 1000 });
  t.is(reasonOf(await snap(b.checklist, unban)), "schema", "snapshots hold active bans only");
  t.deepEqual(
    [
      b.metrics.get("events_accepted_total", { source: "snapshot" }),
      b.metrics.get("events_dropped_total", { reason: "expired" }),
    ],
    [1, 1],
  );
});

test("origins: with subscriber.origins, only the listed monitors may originate events", async (t) => {
  const b = await bench(t, { origins: new Set([origin.nodeId]) });
  const stranger = await sign(other, { seq: 1, ip: "203.0.113.5", time: NOW });
  t.is(reasonOf(await live(b.checklist, stranger)), "unauthorized");
  t.is(reasonOf(await snap(b.checklist, stranger)), "unauthorized");
  t.true((await live(b.checklist, await sign(origin, { seq: 1, ip: "203.0.113.5", time: NOW }))).ok);
});

test("never-ban: built-ins, host addresses, configured entries and ignoreip ranges are refused", async (t) => {
  const b = await bench(t);
  const targets = [
    "127.0.0.1", // built-in loopback
    "169.254.1.1", // built-in link-local
    "::1",
    "fe80::1",
    "198.51.100.250", // this host
    "192.0.2.10", // subscriber.neverBan / a publisher
    "10.200.3.4", // inside 10.0.0.0/8
    "2001:db8:ffff::7", // inside an ignoreip range
    "::ffff:10.1.1.1", // the same host in its mapped spelling
  ];
  let seq = 1;
  for (const ip of targets) {
    const decision = await live(b.checklist, await sign(origin, { seq: seq++, ip, time: NOW }));
    t.is(reasonOf(decision), "never-ban", ip);
  }
  t.is(b.metrics.get("events_dropped_total", { reason: "never-ban" }), targets.length);
  t.true((await live(b.checklist, await sign(origin, { seq: seq++, ip: "192.0.2.11", time: NOW }))).ok);
});

test("never-ban: a range event that overlaps the list is refused", async (t) => {
  const b = await bench(t, { allowCidr: true });
  const range = await signRange(origin, "10.9.8.0/24");
  t.is(reasonOf(await live(b.checklist, range)), "never-ban");
  const outside = await signRange(origin, "203.0.113.0/24", 2);
  t.true((await live(b.checklist, outside)).ok);
});

test("ranges are refused unless events.allowCidr", async (t) => {
  const b = await bench(t);
  t.is(reasonOf(await live(b.checklist, await signRange(origin, "203.0.113.0/24"))), "cidr");
});

test("jail mapping: same, a fixed jail, the fallback, or a drop when neither exists", async (t) => {
  const local = new Set(["sshd", "f2bz", "recidive"]);
  t.is(mapJail({ jail: "same" }, local, "sshd"), "sshd");
  t.is(
    mapJail({ jail: "same" }, local, "nginx-http-auth"),
    undefined,
    "missing here, no fallbackJail: not applied",
  );
  const withFallback = { jail: "same", fallbackJail: "f2bz" };
  t.is(mapJail(withFallback, local, "nginx-http-auth"), "f2bz");
  t.is(mapJail(withFallback, local, "sshd"), "sshd");
  t.is(mapJail({ jail: "cluster", fallbackJail: "f2bz" }, local, "sshd"), "f2bz", "fixed jail missing");
  t.is(mapJail({ jail: "recidive" }, local, "sshd"), "recidive");
  t.is(mapJail({ jail: "same", fallbackJail: "gone" }, local, "web"), undefined);
  t.is(mapJail({ jail: "same" }, undefined, "web"), "web", "jails unknown: taken as is");

  const b = await bench(t, {
    local: { current: { neverBan: NeverBanList.create({}), jails: new Set(["sshd"]) } },
  });
  t.is(
    reasonOf(
      await live(b.checklist, await sign(origin, { seq: 1, ip: "203.0.113.5", jail: "web", time: NOW })),
    ),
    "jail",
  );
  const ok = await live(
    b.checklist,
    await sign(origin, { seq: 2, ip: "203.0.113.5", jail: "sshd", time: NOW }),
  );
  t.true(ok.ok && ok.jail === "sshd");
});

test("a refused event is not remembered: the same id may still pass once the reason is gone", async (t) => {
  // never-ban is read per event (the list is refreshed from fail2ban); a drop must not poison the id.
  const local = {
    current: { neverBan: NeverBanList.create({ entries: ["203.0.113.0/24"] }), jails: undefined },
  };
  const b = await bench(t, { local });
  const event = await sign(origin, { seq: 1, ip: "203.0.113.5", time: NOW });
  t.is(reasonOf(await live(b.checklist, event)), "never-ban");
  local.current = { neverBan: NeverBanList.create({}), jails: undefined };
  t.true((await live(b.checklist, event)).ok);
});

function signRange(identity: SecretIdentity, ip: string, seq = 1): Promise<SignedEvent> {
  return signEvent(
    identity,
    { seq, kind: "ban", jail: "sshd", ip, time: NOW, expires: NOW + 60_000 },
    { allowCidr: true },
  );
}

test("superseded: a snapshot's ban older than a live unban of its origin is not applied; a newer ban is", async (t) => {
  const b = await bench(t);
  // The snapshot was read before the unban; the unban came live while it streamed (issue 10, 5).
  const ban = await sign(origin, { seq: 3, ip: "203.0.113.5", time: NOW - 2000 });
  const unban = await sign(origin, { seq: 4, kind: "unban", ip: "203.0.113.5", time: NOW - 1000 });
  const otherBan = await sign(other, { seq: 1, ip: "203.0.113.5", time: NOW - 3000 });
  const again = await sign(origin, { seq: 5, ip: "203.0.113.5", time: NOW });
  t.true((await live(b.checklist, unban)).ok);
  t.is(reasonOf(await snap(b.checklist, ban)), "superseded");
  t.is(reasonOf(await live(b.checklist, ban)), "superseded", "also through a second publisher, late");
  t.true((await snap(b.checklist, otherBan)).ok, "another origin's hold is not lifted by it");
  t.true((await live(b.checklist, again)).ok, "the origin's later ban is");
  t.is(b.metrics.get("events_dropped_total", { reason: "superseded" }), 2);
});

test("superseded: an unban seen before (a duplicate) still supersedes the older ban", async (t) => {
  const b = await bench(t);
  const ban = await sign(origin, { seq: 3, ip: "203.0.113.5", time: NOW - 2000 });
  const unban = await sign(origin, { seq: 4, kind: "unban", ip: "203.0.113.5", time: NOW - 1000 });
  t.true((await live(b.checklist, unban)).ok);
  const restarted = b.restart();
  t.is(reasonOf(await live(restarted, unban)), "duplicate");
  t.is(reasonOf(await snap(restarted, ban)), "superseded");
});
