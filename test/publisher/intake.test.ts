import type { ExecutionContext } from "ava";
import test from "ava";
import { pino } from "pino";
import type { SecretIdentity } from "../../src/keys/identity.js";
import { Metrics } from "../../src/metrics/registry.js";
import { NeverBanList } from "../../src/policy/never-ban.js";
import { MAX_PAYLOAD_BYTES } from "../../src/protocol/event.js";
import { encodeEventFrames, TOPIC_EVENT } from "../../src/protocol/frames.js";
import { TOPIC_ACK, TOPIC_NACK } from "../../src/protocol/submit.js";
import { Intake } from "../../src/publisher/intake.js";
import { OriginLimiter } from "../../src/publisher/rate-limit.js";
import { PublisherStore } from "../../src/publisher/store.js";
import { AccessControl } from "../../src/transport/access.js";
import { testCluster } from "../helpers/cluster.js";
import { tempDir } from "../helpers/temp-dir.js";
import { fieldsOf, flipBit, signRaw } from "../protocol/helpers.js";
import { sign } from "./helpers.js";

/**
 * The intake checklist on hand-built frames: each reject reason, the order of the checks (cheap
 * and unauthenticated first, tokens spent only on events that passed everything else), what is
 * acknowledged without a broadcast, and that what is broadcast is the submitted bytes.
 */
const WINDOW_MS = 120_000;
const NOW = Date.now();

interface Broadcast {
  payload: Buffer;
  signature: Buffer;
  seq: number;
}

async function setup(
  t: ExecutionContext,
  limits = { perOriginRate: 1, perOriginBurst: 3, globalRate: 100 },
  maxActivePerOrigin = 100_000,
) {
  const cluster = await testCluster(t);
  const [web1, web2, outsider, reader] = await Promise.all(
    ["web1", "web2", "outsider", "reader"].map((n) => cluster.node(n)),
  );
  await cluster.authorize(web1!, "monitor");
  await cluster.authorize(web2!, "monitor");
  // Allowed to receive, not to originate.
  await cluster.authorize(reader!, "subscriber");
  const access = await AccessControl.open(cluster.keysDir, { logger: pino({ level: "silent" }), pollMs: 0 });
  t.teardown(() => access.close());
  const store = new PublisherStore(await tempDir(t, "f2bz-intake-"));
  t.teardown(() => store.close());
  let now = NOW;
  const broadcasts: Broadcast[] = [];
  const metrics = new Metrics("publisher");
  const lines: { level: number; msg: string; reason?: string; node?: string }[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const intake = new Intake({
    store,
    isAuthorizedOrigin: (origin, key) => access.isAuthorizedOrigin(origin, key),
    neverBan: NeverBanList.create({ entries: ["198.51.100.0/28"] }),
    limiter: new OriginLimiter(limits, () => now),
    windowMs: WINDOW_MS,
    maxBanTimeMs: 86_400_000,
    allowCidr: true,
    maxActivePerOrigin,
    broadcast: (payload, signature, seq) => broadcasts.push({ payload, signature, seq }),
    metrics,
    logger,
    now: () => now,
  });
  return {
    intake,
    store,
    metrics,
    lines,
    broadcasts,
    advance: (ms: number) => {
      now += ms;
    },
    web1: web1!.identity,
    web2: web2!.identity,
    outsider: outsider!.identity,
    reader: reader!.identity,
  };
}

type Reply = { type: "ack"; id: string } | { type: "nack"; id: string; reason: string };

/** Read by hand, not with decodeSubmitReply: frames refused before the id is known carry "". */
function reply(frames: Buffer[]): Reply {
  const [topic, id, reason] = frames.map((f) => f.toString("latin1"));
  if (topic === TOPIC_ACK && frames.length === 2) return { type: "ack", id: id! };
  if (topic === TOPIC_NACK && frames.length === 3) return { type: "nack", id: id!, reason: reason! };
  throw new Error(`unexpected reply ${frames.map((f) => f.toString("latin1")).join("|")}`);
}

async function submit(intake: Intake, event: { payload: Buffer; signature: Buffer }): Promise<Reply> {
  return reply(await intake.handle(encodeEventFrames(event.payload, event.signature)));
}

const signed = (id: SecretIdentity, seq: number, ip = "203.0.113.7", more = {}) =>
  sign(id, { seq, ip, time: NOW, ...more }, true);

test("an event is stored, acknowledged and broadcast byte for byte with the next sequence number", async (t) => {
  const s = await setup(t);
  const event = await signed(s.web1, 1);
  t.deepEqual(await submit(s.intake, event), { type: "ack", id: event.event.id });
  t.is(s.broadcasts.length, 1);
  const [sent] = s.broadcasts;
  t.true(sent!.payload.equals(event.payload), "payload unchanged");
  t.true(sent!.signature.equals(event.signature), "signature unchanged");
  t.is(sent!.seq, 1);
  t.true(s.store.hasSeen(event.event.id), "stored before the ack");
  t.is(s.metrics.get("submissions_accepted_total", { outcome: "broadcast" }), 1);
  const second = await signed(s.web2, 1, "2001:db8::7");
  await submit(s.intake, second);
  t.deepEqual(
    s.broadcasts.map((b) => b.seq),
    [1, 2],
  );
});

test("a resend after a lost ack is acknowledged again and not re-broadcast", async (t) => {
  const s = await setup(t);
  const event = await signed(s.web1, 1);
  await submit(s.intake, event);
  t.deepEqual(await submit(s.intake, event), { type: "ack", id: event.event.id });
  t.is(s.broadcasts.length, 1);
  t.is(s.metrics.get("submissions_accepted_total", { outcome: "duplicate" }), 1);
});

test("a ban by another origin of an address already banned is broadcast; the same origin again is not", async (t) => {
  const s = await setup(t);
  await submit(s.intake, await signed(s.web1, 1));
  const same = await signed(s.web2, 1);
  t.deepEqual(await submit(s.intake, same), { type: "ack", id: same.event.id });
  t.is(s.broadcasts.length, 2, "web2's hold reaches the subscribers: its own unban or expiry is then right");
  t.true(s.broadcasts[1]!.payload.equals(same.payload));
  const again = await signed(s.web2, 2);
  t.deepEqual(await submit(s.intake, again), { type: "ack", id: again.event.id });
  t.is(s.broadcasts.length, 2);
  t.is(s.metrics.get("submissions_accepted_total", { outcome: "already-active" }), 1);
  const unban = await signed(s.web1, 2, "203.0.113.7", { kind: "unban" });
  t.deepEqual(await submit(s.intake, unban), { type: "ack", id: unban.event.id });
  t.is(s.broadcasts.length, 3, "the unban changes the holders");
  const nothing = await signed(s.web1, 3, "203.0.113.99", { kind: "unban" });
  t.deepEqual(await submit(s.intake, nothing), { type: "ack", id: nothing.event.id });
  t.is(s.broadcasts.length, 3, "an unban of a ban nobody holds is not news");
});

test("an origin at publisher.maxActivePerOrigin is refused new bans with a reason, warned once", async (t) => {
  const s = await setup(t, { perOriginRate: 100, perOriginBurst: 100, globalRate: 1000 }, 2);
  for (let seq = 1; seq <= 2; seq++) {
    t.like(await submit(s.intake, await signed(s.web1, seq, `203.0.113.${seq}`)), { type: "ack" });
  }
  for (let seq = 3; seq <= 6; seq++) {
    const over = await signed(s.web1, seq, `203.0.113.${seq}`);
    t.deepEqual(await submit(s.intake, over), { type: "nack", id: over.event.id, reason: "origin-limit" });
  }
  t.is(s.metrics.get("events_dropped_total", { reason: "origin-limit" }), 4);
  t.is(s.broadcasts.length, 2);
  const warned = s.lines.filter((l) => l.msg.startsWith("origin reached publisher.maxActivePerOrigin"));
  t.is(warned.length, 1, "one warning per origin and minute");
  t.is(warned[0]!.node, s.web1.nodeId);
  t.like(await submit(s.intake, await signed(s.web2, 1, "203.0.113.9")), { type: "ack" });
  t.like(await submit(s.intake, await signed(s.web1, 7, "203.0.113.1", { kind: "unban" })), { type: "ack" });
  t.like(await submit(s.intake, await signed(s.web1, 8, "203.0.113.8")), { type: "ack" });
  t.is(s.broadcasts.length, 5);
});

test("wrong frame count, topic or frame sizes are refused before anything is parsed", async (t) => {
  const s = await setup(t);
  const event = await signed(s.web1, 1);
  const topic = Buffer.from(TOPIC_EVENT);
  const cases: [string, Buffer[], string][] = [
    ["two frames", [topic, event.payload], "frames"],
    ["four frames", [topic, event.payload, event.signature, Buffer.from("x")], "frames"],
    ["unknown topic", [Buffer.from("f2bz/2"), event.payload, event.signature], "frames"],
    ["empty payload", [topic, Buffer.alloc(0), event.signature], "size"],
    ["payload over the cap", [topic, Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20), event.signature], "size"],
    ["short signature", [topic, event.payload, event.signature.subarray(0, 63)], "signature"],
    ["not an event", [topic, Buffer.from('{"hello":"world"}'), event.signature], "schema"],
    ["another version", [topic, Buffer.from('{"v":2,"key":"x"}'), event.signature], "version"],
  ];
  for (const [what, frames, reason] of cases) {
    t.deepEqual(reply(await s.intake.handle(frames)), { type: "nack", id: "", reason }, what);
  }
  t.is(s.broadcasts.length, 0);
  t.is(s.metrics.get("events_dropped_total", { reason: "frames" }), 3);
});

test("events outside the time window are refused as stale or future, with their id", async (t) => {
  const s = await setup(t);
  const stale = await sign(s.web1, { seq: 1, ip: "203.0.113.7", time: NOW - WINDOW_MS - 1 });
  t.deepEqual(await submit(s.intake, stale), { type: "nack", id: stale.event.id, reason: "stale" });
  const future = await sign(s.web1, { seq: 2, ip: "203.0.113.7", time: NOW + WINDOW_MS + 1 });
  t.deepEqual(await submit(s.intake, future), { type: "nack", id: future.event.id, reason: "future" });
  const edge = await sign(s.web1, { seq: 3, ip: "203.0.113.7", time: NOW - WINDOW_MS });
  t.deepEqual(await submit(s.intake, edge), { type: "ack", id: edge.event.id });
});

test("a validly signed event from a key that is not an authorized monitor is refused", async (t) => {
  const s = await setup(t);
  const outsider = await signed(s.outsider, 1);
  t.deepEqual(await submit(s.intake, outsider), {
    type: "nack",
    id: outsider.event.id,
    reason: "unauthorized",
  });
  const reader = await signed(s.reader, 1);
  t.deepEqual(await submit(s.intake, reader), { type: "nack", id: reader.event.id, reason: "unauthorized" });
  // An authorized origin's id with the outsider's key in the payload: the key decides.
  const payload = Buffer.from(
    JSON.stringify(
      fieldsOf(s.outsider, {
        id: `${s.web1.nodeId}:9`,
        origin: s.web1.nodeId,
        seq: 9,
        time: NOW,
        expires: NOW + 1000,
      }),
    ),
  );
  t.deepEqual(await submit(s.intake, { payload, signature: await signRaw(s.outsider, payload) }), {
    type: "nack",
    id: `${s.web1.nodeId}:9`,
    reason: "unauthorized",
  });
  t.is(s.broadcasts.length, 0);
  t.false(s.store.hasSeen(outsider.event.id));
});

test("a flipped bit in the signature or the payload is refused as a bad signature", async (t) => {
  const s = await setup(t);
  const event = await signed(s.web1, 1);
  t.deepEqual(await submit(s.intake, { payload: event.payload, signature: flipBit(event.signature, 10) }), {
    type: "nack",
    id: event.event.id,
    reason: "signature",
  });
  // In the display name, past everything the envelope peek reads.
  const tampered = flipBit(event.payload, event.payload.length - 3);
  t.deepEqual(await submit(s.intake, { payload: tampered, signature: event.signature }), {
    type: "nack",
    id: event.event.id,
    reason: "signature",
  });
  t.is(s.broadcasts.length, 0);
  t.false(s.store.hasSeen(event.event.id), "a forged copy must not shadow the real event");
  t.deepEqual(await submit(s.intake, event), { type: "ack", id: event.event.id });
  t.is(s.broadcasts.length, 1);
});

test("never-ban addresses and ranges are refused", async (t) => {
  const s = await setup(t);
  for (const [seq, ip] of [
    [1, "127.0.0.1"],
    [2, "::1"],
    [3, "169.254.10.1"],
    [4, "198.51.100.5"],
    [5, "198.51.100.0/24"],
  ] as const) {
    const event = await signed(s.web1, seq, ip);
    t.deepEqual(await submit(s.intake, event), { type: "nack", id: event.event.id, reason: "never-ban" }, ip);
  }
  t.is(s.broadcasts.length, 0);
  t.is(s.metrics.get("events_dropped_total", { reason: "never-ban" }), 5);
});

test("an origin over its bucket is rate-limited, another origin is not, and a later resend passes", async (t) => {
  const s = await setup(t);
  for (let seq = 1; seq <= 3; seq++) {
    t.is((await submit(s.intake, await signed(s.web1, seq, `203.0.113.${seq}`))).type, "ack");
  }
  const over = await signed(s.web1, 4, "203.0.113.4");
  t.deepEqual(await submit(s.intake, over), { type: "nack", id: over.event.id, reason: "rate-limited" });
  t.is(s.metrics.get("submissions_rate_limited_total", { limit: "origin" }), 1);
  t.is((await submit(s.intake, await signed(s.web2, 1, "198.51.100.77"))).type, "ack");
  t.false(s.store.hasSeen(over.event.id), "a refused event is not remembered");
  s.advance(1000);
  t.deepEqual(await submit(s.intake, over), { type: "ack", id: over.event.id });
  t.is(s.broadcasts.length, 5);
});

test("checks run in order: window, then authorization, then signature, and only then tokens", async (t) => {
  const s = await setup(t);
  const staleOutsider = await sign(s.outsider, { seq: 1, ip: "203.0.113.7", time: NOW - WINDOW_MS - 1 });
  t.is(
    (await submit(s.intake, { ...staleOutsider, signature: flipBit(staleOutsider.signature, 0) })).type,
    "nack",
  );
  t.is(s.metrics.get("events_dropped_total", { reason: "stale" }), 1);
  const outsider = await signed(s.outsider, 2);
  const forged = { payload: outsider.payload, signature: flipBit(outsider.signature, 0) };
  t.like(await submit(s.intake, forged), { reason: "unauthorized" });
  // Forgeries in web1's name and never-ban events do not spend web1's tokens (burst 3).
  for (let seq = 1; seq <= 20; seq++) {
    const event = await signed(s.web1, seq, `203.0.113.${seq}`);
    t.like(await submit(s.intake, { payload: event.payload, signature: flipBit(event.signature, 5) }), {
      reason: "signature",
    });
    t.like(await submit(s.intake, await signed(s.web1, 100 + seq, "127.0.0.1")), { reason: "never-ban" });
  }
  for (let seq = 1; seq <= 3; seq++) {
    t.like(await submit(s.intake, await signed(s.web1, seq, `203.0.113.${seq}`)), { type: "ack" });
  }
  t.is(s.broadcasts.length, 3);
});

test("a cidr is refused where single addresses only are allowed", async (t) => {
  const cluster = await testCluster(t);
  const node = await cluster.node("strict");
  const store = new PublisherStore(await tempDir(t));
  t.teardown(() => store.close());
  const strict = new Intake({
    store,
    isAuthorizedOrigin: (origin) => origin === node.identity.nodeId,
    neverBan: NeverBanList.create({}),
    limiter: new OriginLimiter({ perOriginRate: 1, perOriginBurst: 10, globalRate: 10 }),
    windowMs: WINDOW_MS,
    maxBanTimeMs: 86_400_000,
    allowCidr: false,
    maxActivePerOrigin: 100_000,
    broadcast: () => t.fail("broadcast"),
    metrics: new Metrics("publisher"),
    logger: pino({ level: "silent" }),
  });
  const range = await sign(node.identity, { seq: 1, ip: "203.0.113.0/24" }, true);
  t.deepEqual(await submit(strict, range), { type: "nack", id: range.event.id, reason: "cidr" });
});

test("a ban is held at most maxBanTime, while subscribers get its signed bytes unchanged", async (t) => {
  const s = await setup(t);
  const day = 86_400_000;
  const long = await signed(s.web1, 1, "203.0.113.7", { expires: NOW + 10 * day });
  await submit(s.intake, long);
  t.deepEqual(s.store.pruneExpired(NOW + day - 1), []);
  t.deepEqual(
    s.store.pruneExpired(NOW + day).map((e) => e.id),
    [long.event.id],
  );
  t.true(s.broadcasts[0]!.payload.equals(long.payload));
});

test("rejections are counted one by one but logged only a few times per reason", async (t) => {
  const s = await setup(t);
  const event = await signed(s.web1, 1);
  for (let i = 0; i < 50; i++) {
    await submit(s.intake, { payload: event.payload, signature: flipBit(event.signature, i % 8) });
  }
  t.is(s.metrics.get("events_dropped_total", { reason: "signature" }), 50);
  const warned = s.lines.filter((l) => l.msg === "submitted event rejected" && l.reason === "signature");
  t.true(warned.length >= 1 && warned.length <= 3, `${warned.length} log lines for 50 rejections`);
});

test("an internal failure is a busy nack with the event's id, never an exception", async (t) => {
  const s = await setup(t);
  const event = await signed(s.web1, 1);
  s.store.close();
  t.deepEqual(await submit(s.intake, event), { type: "nack", id: event.event.id, reason: "busy" });
  t.is(s.metrics.get("submissions_failed_total"), 1);
  t.is(s.broadcasts.length, 0);
});
