import { rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import type * as zmq from "zeromq";
import { formatPublicCertificate } from "../../src/keys/identity.js";
import { keyHex, roleDir } from "../../src/keys/store.js";
import { Outbox } from "../../src/monitor/outbox.js";
import { type BanEvent, isEventId } from "../../src/protocol/event.js";
import { peekEnvelope } from "../../src/protocol/peek.js";
import { encodeAck, encodeNack } from "../../src/protocol/submit.js";
import { openDatabase } from "../../src/state/database.js";
import { SUBSCRIBER_STATE_FILE } from "../../src/state/files.js";
import { LEDGER_SCHEMA, recordApplied } from "../../src/state/ledger.js";
import { BoundEndpoint } from "../../src/transport/endpoint.js";
import { createServerSocket, createTransportContext } from "../../src/transport/sockets.js";
import { ZapHandler } from "../../src/transport/zap.js";
import { waitFor } from "../harness/wait.js";
import type { TestNode } from "../helpers/cluster.js";
import { publisherPorts } from "../helpers/publisher.js";
import {
  banLine,
  captureLogger,
  count,
  DEADLINE_MS,
  type LogLine,
  monitorLab,
  unbanLine,
} from "./helpers.js";

/**
 * Delivery from a monitor to publishers, end to end on real sockets: the real monitor tails a file,
 * the real publisher (or a deliberately broken REQ/REP peer) answers, and a subscriber on the
 * publisher's feed sees what the cluster would see.
 */

const until = <T>(check: () => T | undefined, what: string, ms = DEADLINE_MS) =>
  waitFor(check, { timeoutMs: ms, what });

const drained = (monitor: { outbox: { size(): number } }) =>
  until(() => (monitor.outbox.size() === 0 ? true : undefined), "the outbox to drain");

const queued = (logs: LogLine[], n: number) =>
  until(() => {
    const lines = logs.filter((l) => l.msg === "event queued");
    return lines.length >= n ? lines : undefined;
  }, `${n} events queued`);

/** A clock `ms` behind the real one until `catchUp()`: an entry signed meanwhile is that much older. */
function lagging(ms: number) {
  let lag = ms;
  return {
    now: () => Date.now() - lag,
    catchUp: () => {
      lag = 0;
    },
  };
}

/** How the outbox names a publisher: by its pinned key. */
const nameOf = (node: TestNode) => keyHex(node.identity.curvePublic);

function assertExactlyOnce(t: ExecutionContext, events: readonly BanEvent[], expected: string[]) {
  t.deepEqual(
    events.map((e) => `${e.kind} ${e.jail} ${e.ip}`),
    expected,
  );
  t.is(new Set(events.map((e) => e.id)).size, events.length, "no event id twice");
}

test("a publisher down for a while, then up, gets every event exactly once, in order", async (t) => {
  t.timeout(40_000);
  const lab = await monitorLab(t);
  const { monitor, logs } = await lab.startMonitor();
  const bans = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "2001:db8::4", "198.51.100.5"];
  await lab.append(...bans.map((ip) => banLine("sshd", ip)));
  await queued(logs, bans.length);
  // It did try, and did not hang on the missing reply.
  await until(
    () => (monitor.metrics.get("deliveries_total", { result: "timeout" }) >= 1 ? true : undefined),
    "a delivery timeout",
  );
  t.is(monitor.outbox.size(), bans.length);

  const { feed } = await lab.startPublisher();
  await feed.waitCount(bans.length);
  await drained(monitor);
  // A sentinel sent after the drain: anything resent late would show up before it.
  await lab.append(banLine("sshd", "198.51.100.99"));
  await feed.waitEvent("ban", "198.51.100.99");
  assertExactlyOnce(
    t,
    feed.events,
    [...bans, "198.51.100.99"].map((ip) => `ban sshd ${ip}`),
  );
  t.deepEqual(
    feed.events.slice(0, bans.length).map((e) => e.id),
    logs
      .filter((l) => l.msg === "event queued")
      .slice(0, bans.length)
      .map((l) => l.id),
    "the events the monitor queued, not copies",
  );
  t.is(count(logs, "no reply from publisher in time: reconnecting and resending"), 1, "rate-limited");
});

/** A CURVE REP-compatible server (ROUTER) behind ZAP that lets the monitor's key in and answers as told. */
async function fakePublisher(
  t: ExecutionContext,
  node: TestNode,
  monitor: TestNode,
  submit: string,
  /** The reply to the nth request (from 1), or undefined for none. */
  answer: (id: string, nth: number) => Buffer[] | undefined,
) {
  const context = createTransportContext();
  const monitorKey = Buffer.from(monitor.identity.curvePublic).toString("hex");
  const zap = await ZapHandler.start({
    context,
    logger: captureLogger().logger,
    registry: {
      lookup: (domain, key) =>
        domain === "submit" && Buffer.from(key).toString("hex") === monitorKey
          ? { nodeId: monitor.identity.nodeId, name: monitor.name }
          : undefined,
    },
  });
  const endpoint = await BoundEndpoint.open(
    () => createServerSocket("router", { context, identity: node.identity, domain: "submit" }),
    submit,
  );
  const received: string[] = [];
  const loop = (async () => {
    for await (const [routingId, delimiter, ...frames] of endpoint.socket as zmq.Router) {
      const peeked = frames[1] ? peekEnvelope(frames[1]) : undefined;
      const id = peeked?.ok ? peeked.envelope.id : "?";
      received.push(id);
      const reply = answer(id, received.length);
      if (reply && routingId && delimiter) {
        await (endpoint.socket as zmq.Router).send([routingId, delimiter, ...reply]);
      }
    }
  })();
  t.teardown(async () => {
    endpoint.close();
    await loop;
    await zap.close();
  });
  return { received };
}

test("a reply that never comes: after ackTimeout the link reconnects and resends, later events follow", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  // Swallows the first request without a word, answers everything after it.
  const fake = await fakePublisher(t, lab.publisherNode, lab.monitorNode, lab.submit, (id, nth) =>
    nth > 1 ? encodeAck(id) : undefined,
  );
  // Long enough that an answered request never times out on a loaded machine.
  const { monitor, logs } = await lab.startMonitor({ ackTimeout: "2s" });
  await lab.append(
    banLine("sshd", "198.51.100.1"),
    banLine("sshd", "198.51.100.2"),
    banLine("sshd", "198.51.100.3"),
  );
  const ids = (await queued(logs, 3)).map((l) => l.id as string);
  await drained(monitor);
  t.deepEqual(fake.received, [ids[0], ids[0], ids[1], ids[2]], "the lost one resent with the same id");
  t.is(monitor.metrics.get("deliveries_total", { result: "timeout" }), 1);
  t.is(monitor.metrics.get("deliveries_total", { result: "acked" }), 3);
  t.truthy(logs.find((l) => l.msg === "no reply from publisher in time: reconnecting and resending"));
});

test("a publisher that never answers does not hold up another one; its events wait in the outbox", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const silentNode = await lab.cluster.node("silent");
  const { submit: silent } = await publisherPorts(t, lab.cluster, silentNode);
  const fake = await fakePublisher(t, silentNode, lab.monitorNode, silent, () => undefined);
  const { feed } = await lab.startPublisher();
  const { monitor } = await lab.startMonitor({
    publishers: [
      { submit: silent, key: silentNode.publicKey },
      { submit: lab.submit, key: lab.publisherNode.publicKey },
    ],
  });
  const bans = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
  await lab.append(...bans.map((ip) => banLine("sshd", ip)));
  await feed.waitCount(3);
  assertExactlyOnce(
    t,
    feed.events,
    bans.map((ip) => `ban sshd ${ip}`),
  );
  await until(
    () => (monitor.outbox.pendingFor(nameOf(lab.publisherNode)) === 0 ? true : undefined),
    "the real one acked",
  );
  t.is(monitor.outbox.pendingFor(nameOf(silentNode)), 3);
  t.is(monitor.outbox.size(), 3);
  t.true(fake.received.length >= 1);
  t.true(fake.received.every((id) => isEventId(id)));
});

test("every publisher gets every event; an entry leaves the outbox once the last one acknowledged it", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const pub2 = await lab.cluster.node("pub2");
  const second = { node: pub2, submit: (await publisherPorts(t, lab.cluster, pub2)).submit };
  const one = await lab.startPublisher();
  const { monitor } = await lab.startMonitor({
    publishers: [
      { submit: lab.submit, key: lab.publisherNode.publicKey },
      { submit: second.submit, key: second.node.publicKey },
    ],
  });
  const bans = ["198.51.100.1", "198.51.100.2", "2001:db8::3"];
  await lab.append(...bans.map((ip) => banLine("sshd", ip)));
  await one.feed.waitCount(3);
  await until(
    () => (monitor.outbox.pendingFor(nameOf(lab.publisherNode)) === 0 ? true : undefined),
    "the first one acked",
  );
  t.is(monitor.outbox.size(), 3, "still waiting for the second publisher");
  t.is(monitor.outbox.pendingFor(nameOf(second.node)), 3);

  const two = await lab.startPublisher({}, second);
  await two.feed.waitCount(3);
  await drained(monitor);
  const expected = bans.map((ip) => `ban sshd ${ip}`);
  assertExactlyOnce(t, one.feed.events, expected);
  assertExactlyOnce(t, two.feed.events, expected);
  t.deepEqual(
    one.feed.events.map((e) => e.id),
    two.feed.events.map((e) => e.id),
    "the same signed events: subscribers of both de-duplicate by id",
  );
});

test("restart mid-stream resumes from the persisted position: no line lost, none twice", async (t) => {
  t.timeout(40_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  const first = await lab.startMonitor();
  const all = Array.from({ length: 9 }, (_, i) => `198.51.100.${i + 1}`);
  await lab.append(...all.slice(0, 3).map((ip) => banLine("web", ip)));
  await feed.waitCount(3);
  await drained(first.monitor);
  await first.monitor.close();

  await lab.append(...all.slice(3, 6).map((ip) => banLine("web", ip)));
  const second = await lab.startMonitor();
  await lab.append(...all.slice(6).map((ip) => banLine("web", ip)));
  await feed.waitCount(9);
  await drained(second.monitor);
  await lab.append(banLine("web", "198.51.100.99"));
  await feed.waitEvent("ban", "198.51.100.99");
  assertExactlyOnce(
    t,
    feed.events,
    [...all, "198.51.100.99"].map((ip) => `ban web ${ip}`),
  );
  const seqs = feed.events.map((e) => e.seq);
  t.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
    "sequence numbers keep rising across the restart",
  );
});

test("restart with undelivered events: the outbox survives and is delivered once the publisher is up", async (t) => {
  t.timeout(40_000);
  const lab = await monitorLab(t);
  const first = await lab.startMonitor();
  await lab.append(banLine("web", "203.0.113.1"), banLine("web", "203.0.113.2"));
  await queued(first.logs, 2);
  await first.monitor.close();

  await lab.append(banLine("web", "203.0.113.3"));
  const second = await lab.startMonitor();
  t.true(second.monitor.outbox.size() >= 2);
  const { feed } = await lab.startPublisher();
  await lab.append(banLine("web", "203.0.113.4"));
  await feed.waitCount(4);
  await drained(second.monitor);
  await lab.append(banLine("web", "203.0.113.99"));
  await feed.waitEvent("ban", "203.0.113.99");
  assertExactlyOnce(
    t,
    feed.events,
    ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.99"].map((ip) => `ban web ${ip}`),
  );
});

test("a full outbox pauses reading with one clear log line; nothing is lost once the publisher is up", async (t) => {
  t.timeout(40_000);
  const lab = await monitorLab(t);
  const { monitor, logs } = await lab.startMonitor({ outboxLimit: 2 });
  const bans = Array.from({ length: 6 }, (_, i) => `198.51.100.${i + 10}`);
  await lab.append(...bans.map((ip) => banLine("sshd", ip)));
  const full = await waitFor(() => logs.find((l) => l.msg.startsWith("outbox full")), {
    timeoutMs: DEADLINE_MS,
    what: "the outbox-full line",
  });
  t.is(full.level, 50, "an error: events are waiting");
  t.is(full.limit, 2);
  t.is(monitor.outbox.size(), 2);
  // Delivery keeps trying meanwhile; the pause is still announced once.
  await until(
    () => (monitor.metrics.get("deliveries_total", { result: "timeout" }) >= 2 ? true : undefined),
    "two timeouts",
  );
  t.is(monitor.outbox.size(), 2);
  t.is(count(logs, "event queued"), 2);

  const { feed } = await lab.startPublisher();
  await feed.waitCount(bans.length);
  await drained(monitor);
  assertExactlyOnce(
    t,
    feed.events,
    bans.map((ip) => `ban sshd ${ip}`),
  );
  t.is(logs.filter((l) => l.msg.startsWith("outbox full")).length, 1);
  t.truthy(logs.find((l) => l.msg === "outbox has room again: log reading resumed"));
});

test("bans of ignored jails and bans the local subscriber applied (its ledger) are not published", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  const { monitor } = await lab.startMonitor({ ignoreJails: ["f2bz"] });
  // Before the subscriber ever ran: its state file does not exist yet.
  await lab.append(banLine("sshd", "198.51.100.1"));
  await feed.waitEvent("ban", "198.51.100.1");

  const db = openDatabase(path.join(lab.monitorNode.stateDir, SUBSCRIBER_STATE_FILE), [LEDGER_SCHEMA]);
  t.teardown(() => db.close());
  recordApplied(db, "ban", "sshd", "198.51.100.7", Date.now() + 3_600_000);
  recordApplied(db, "ban", "sshd", "2001:db8::7", Date.now() + 3_600_000);
  await lab.append(
    banLine("f2bz", "198.51.100.5"),
    unbanLine("f2bz", "198.51.100.5"),
    banLine("sshd", "198.51.100.7"),
    // fail2ban logs IPv6 as given to banip; the ledger holds the canonical form.
    banLine("sshd", "2001:DB8:0:0:0:0:0:7"),
    unbanLine("sshd", "198.51.100.7"),
    // Not in the ledger for this jail: published.
    banLine("web", "198.51.100.7"),
    // In the same jail as the held unban: that unban is decided before this ban goes out.
    banLine("sshd", "198.51.100.9"),
  );
  await feed.waitEvent("ban", "198.51.100.9");
  await drained(monitor);
  t.deepEqual(feed.describe(), ["ban sshd 198.51.100.1", "ban web 198.51.100.7", "ban sshd 198.51.100.9"]);
  t.is(monitor.metrics.get("events_echo_total"), 3);
  t.is(monitor.metrics.get("log_lines_suppressed_total", { reason: "ignored-jail" }), 2);
});

test("bans f2bz cannot carry (odd jail names, invalid addresses) are skipped; reading goes on", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  const { monitor, logs } = await lab.startMonitor();
  await lab.append(
    banLine("has space", "198.51.100.1"),
    banLine("a-jail-name-much-longer-than-32-chars", "198.51.100.2"),
    banLine("sshd", "not-an-ip"),
    banLine("sshd", "0.0.0.0"),
    banLine("sshd", "198.51.100.3"),
  );
  await feed.waitEvent("ban", "198.51.100.3");
  t.deepEqual(feed.describe(), ["ban sshd 198.51.100.3"]);
  t.is(monitor.metrics.get("log_lines_dropped_total", { reason: "invalid-jail" }), 2);
  t.is(monitor.metrics.get("log_lines_dropped_total", { reason: "invalid-ip" }), 2);
  t.truthy(
    logs.find((l) => l.msg === "ban of a jail name f2bz cannot carry ignored" && l.jail === "has space"),
  );
  t.falsy(logs.find((l) => l.msg === "log input failed"));
});

test("a never-ban refusal drops the event for that publisher with an error; later events go through", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const { feed } = await lab.startPublisher();
  const { monitor, logs } = await lab.startMonitor();
  await lab.append(banLine("sshd", "127.0.0.1"), banLine("sshd", "198.51.100.2"));
  await feed.waitEvent("ban", "198.51.100.2");
  await drained(monitor);
  t.deepEqual(feed.describe(), ["ban sshd 198.51.100.2"]);
  const rejected = logs.find((l) => l.msg === "publisher rejected the event: dropped for this publisher");
  t.is(rejected?.level, 50);
  t.is(rejected?.reason, "never-ban");
  t.is(monitor.metrics.get("deliveries_nacked_total", { reason: "never-ban" }), 1);
});

test("an unauthorized origin is retried with back-off and delivered once its key is authorized", async (t) => {
  t.timeout(40_000);
  const lab = await monitorLab(t, { authorize: false });
  // The CURVE key may connect (so the publisher answers), but without the verify key the node may
  // not originate events: what an operator sees after copying a CZMQ certificate by mistake.
  const file = path.join(roleDir(lab.cluster.keysDir, "monitor"), "web1.key");
  const { curvePublic, nodeId, name } = lab.monitorNode.identity;
  await writeFile(file, formatPublicCertificate({ name, nodeId, curvePublic }));
  const { feed } = await lab.startPublisher();
  const { monitor, logs } = await lab.startMonitor();
  await lab.append(banLine("sshd", "198.51.100.1"));
  await until(
    () =>
      monitor.metrics.get("deliveries_nacked_total", { reason: "unauthorized" }) >= 2 ? true : undefined,
    "two unauthorized replies",
  );
  const warning = logs.find((l) => l.msg === "publisher refused the event for now: retrying");
  t.is(warning?.reason, "unauthorized");
  t.is(monitor.outbox.size(), 1);
  t.deepEqual(feed.events, []);

  await writeFile(`${file}.tmp`, formatPublicCertificate(lab.monitorNode.identity));
  await rename(`${file}.tmp`, file);
  await feed.waitEvent("ban", "198.51.100.1", 35_000);
  await drained(monitor);
  await lab.append(banLine("sshd", "198.51.100.99"));
  await feed.waitEvent("ban", "198.51.100.99");
  assertExactlyOnce(t, feed.events, ["ban sshd 198.51.100.1", "ban sshd 198.51.100.99"]);
});

test("an entry held longer than half the window is signed again before it is sent: same ban, new id", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const window = { window: "2s" };
  // The monitor's clock runs 10 s behind while it signs, then catches up: the entry has aged
  // without the test waiting for it.
  const clock = lagging(10_000);
  const { monitor, logs } = await lab.startMonitor({ banTime: "1h" }, window, { now: clock.now });
  await lab.append(banLine("sshd", "198.51.100.1"));
  const [entry] = await queued(logs, 1);
  const original = monitor.outbox.nextFor(nameOf(lab.publisherNode))!;
  t.is(entry?.id, original.id);
  // Past the publisher's whole window (on its own, real clock), so unchanged bytes are refused.
  t.true(Date.now() - original.time > 2_000);
  clock.catchUp();
  const { feed } = await lab.startPublisher(window);
  const event = await feed.waitEvent("ban", "198.51.100.1");
  await drained(monitor);
  t.not(event.id, original.id);
  t.true(event.seq > original.seq);
  t.true(event.time > original.time);
  t.is(event.expires, original.expires, "the same ban: its expiry does not move");
  t.true(monitor.metrics.get("deliveries_total", { result: "resigned" }) >= 1);
  t.is(feed.events.length, 1);
});

test("a stale refusal from a publisher with a shorter window: signed again, in its place in the queue", async (t) => {
  t.timeout(40_000);
  const lab = await monitorLab(t);
  // Signed a minute ago by the monitor's clock: older than the publisher's window, well inside ours.
  const clock = lagging(60_000);
  const { monitor, logs } = await lab.startMonitor({}, { window: "10m" }, { now: clock.now });
  await lab.append(banLine("sshd", "198.51.100.1"));
  const [ban] = await queued(logs, 1);
  const original = monitor.outbox.nextFor(nameOf(lab.publisherNode))!;
  t.is(ban?.id, original.id);
  t.true(Date.now() - original.time > 5_000);
  clock.catchUp();
  // Queued behind the stale ban and still fresh: re-signing the ban must not move it past these,
  // or the publisher would end up with .1 banned although fail2ban lifted it.
  await lab.append(unbanLine("sshd", "198.51.100.1"), banLine("sshd", "198.51.100.2"));
  await queued(logs, 3);
  const { publisher, feed } = await lab.startPublisher({ window: "5s" });
  await feed.waitCount(3);
  await drained(monitor);
  t.deepEqual(feed.describe(), ["ban sshd 198.51.100.1", "unban sshd 198.51.100.1", "ban sshd 198.51.100.2"]);
  t.true(monitor.metrics.get("deliveries_nacked_total", { reason: "stale" }) >= 1);
  t.not(feed.events[0]!.id, original.id);
  t.is(feed.events[0]!.expires, original.expires);
  t.is(publisher.store.activeCount(), 1, "only .2 is still banned");
});

test("a publisher that calls even freshly signed events stale (clock ahead) gets them with back-off", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const fake = await fakePublisher(t, lab.publisherNode, lab.monitorNode, lab.submit, (id, nth) =>
    nth <= 3 ? encodeNack(id, "stale") : encodeAck(id),
  );
  const { monitor, logs } = await lab.startMonitor({ ackTimeout: "3s" });
  await lab.append(banLine("sshd", "198.51.100.1"));
  const [first] = await queued(logs, 1);
  await drained(monitor);
  t.is(fake.received.length, 4);
  t.is(fake.received[0], first?.id);
  t.is(new Set(fake.received).size, 4, "signed again after each refusal: a new id each time");
  t.is(monitor.metrics.get("deliveries_nacked_total", { reason: "stale" }), 3);
  const warning = logs.find((l) => l.msg.startsWith("publisher refuses even freshly signed events"));
  t.is(warning?.level, 40);
});

test("a queued ban whose expiry passed while no publisher answered is dropped, not sent", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  // A ban of 1 s signed 10 s ago by the monitor's clock: over before any publisher answered.
  const clock = lagging(10_000);
  const { monitor, logs } = await lab.startMonitor({ banTime: "1s" }, { window: "2s" }, { now: clock.now });
  await lab.append(banLine("sshd", "198.51.100.1"));
  await queued(logs, 1);
  t.is(monitor.outbox.size(), 1);
  clock.catchUp();
  await drained(monitor);
  const { feed } = await lab.startPublisher({ window: "2s" });
  await lab.append(banLine("sshd", "198.51.100.2"));
  await feed.waitEvent("ban", "198.51.100.2");
  t.deepEqual(feed.describe(), ["ban sshd 198.51.100.2"]);
});

test("a publisher that refuses the monitor's key is named in the log, and a pinned key that does not match too", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t, { authorize: false });
  await lab.startPublisher();
  const { monitor, logs } = await lab.startMonitor();
  await lab.append(banLine("sshd", "198.51.100.61"));
  const refused = await until(
    () => logs.find((l) => l.msg.startsWith("publisher refused our key")),
    "the refusal explained",
  );
  t.regex(refused.msg, /keys\/authorized\/monitors$/);
  t.true(monitor.metrics.get("deliveries_total", { result: "refused" }) >= 1);
  t.is(monitor.outbox.size(), 1, "the event waits for the key to be authorized");

  // Another monitor that pinned the wrong publisher key (its own) never gets a handshake.
  const wrong = await monitorLab(t);
  await wrong.startPublisher();
  const other = await wrong.startMonitor({
    publishers: [{ submit: wrong.submit, key: wrong.monitorNode.publicKey }],
  });
  await wrong.append(banLine("sshd", "198.51.100.62"));
  await until(
    () => other.logs.find((l) => l.msg === "publisher key does not match: check monitor.publishers[].key"),
    "the mismatch explained",
  );
  t.is(other.monitor.outbox.size(), 1);
});

test("monitor.unbanHold: an unban waits in the interpreter for that long; 0s sends it at once", async (t) => {
  t.timeout(30_000);
  const held = await monitorLab(t);
  const first = await held.startPublisher();
  const { monitor } = await held.startMonitor({ unbanHold: "10m" });
  await held.append(banLine("sshd", "198.51.100.71"), unbanLine("sshd", "198.51.100.71"));
  await first.feed.waitEvent("ban", "198.51.100.71");
  const saved = await until(() => {
    const state = monitor.outbox.interpreterState("file") as { held?: unknown[] } | undefined;
    return state?.held?.length === 1 ? state : undefined;
  }, "the unban held in the saved interpreter state");
  t.is(saved.held?.length, 1);
  t.deepEqual(first.feed.describe(), ["ban sshd 198.51.100.71"], "the unban has not travelled");

  const direct = await monitorLab(t);
  const second = await direct.startPublisher();
  await direct.startMonitor({ unbanHold: "0s" });
  await direct.append(banLine("sshd", "198.51.100.72"), unbanLine("sshd", "198.51.100.72"));
  await second.feed.waitEvent("unban", "198.51.100.72");
  t.deepEqual(second.feed.describe(), ["ban sshd 198.51.100.72", "unban sshd 198.51.100.72"]);
});

test("a publisher renamed in the config (another host name, same pinned key) keeps its unacknowledged events", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const before = await lab.startMonitor();
  await lab.append(banLine("sshd", "198.51.100.81"), banLine("sshd", "198.51.100.82"));
  await queued(before.logs, 2);
  await before.monitor.close();

  // The operator now names the same publisher (same key file) by a host name instead of its address.
  const renamed = lab.submit.replace("127.0.0.1", "localhost");
  const { monitor } = await lab.startMonitor({
    publishers: [{ submit: renamed, key: lab.publisherNode.publicKey }],
  });
  t.is(monitor.outbox.size(), 2, "nothing dropped at start");
  const { feed } = await lab.startPublisher();
  await feed.waitCount(2);
  await drained(monitor);
  assertExactlyOnce(t, feed.events, ["ban sshd 198.51.100.81", "ban sshd 198.51.100.82"]);
});

test("two publishers pinning one key are refused at start: they would share one queue", async (t) => {
  const lab = await monitorLab(t);
  const { submit: other } = await publisherPorts(t, lab.cluster, await lab.cluster.node("pub2"));
  const error = await t.throwsAsync(
    lab.startMonitor({
      publishers: [
        { submit: lab.submit, key: lab.publisherNode.publicKey },
        { submit: other, key: lab.publisherNode.publicKey },
      ],
    }),
  );
  t.like(error, { code: "CONFIG_INVALID" });
  t.regex(
    error?.message ?? "",
    /^monitor\.publishers\[1\] pins the same key as monitor\.publishers\[0\] \('.*pub1\.key'\)/,
  );
});

test("the process signal stops the monitor: nothing read after its abort, close() then saves where reading stopped", async (t) => {
  t.timeout(30_000);
  const lab = await monitorLab(t);
  const stop = new AbortController();
  const { monitor, logs } = await lab.startMonitor({}, {}, { signal: stop.signal });
  await lab.append(banLine("sshd", "198.51.100.91"));
  await queued(logs, 1);
  const { size } = await stat(lab.logFile);
  stop.abort();
  await lab.append(banLine("sshd", "198.51.100.92"));
  await monitor.close();
  t.is(count(logs, "event queued"), 1, "the line after the abort is left for the next start");
  const outbox = new Outbox(lab.monitorNode.stateDir, [
    { name: nameOf(lab.publisherNode), endpoint: lab.submit },
  ]);
  t.like(outbox.position("file"), { offset: size });
  t.is(outbox.size(), 1);
  outbox.close();
  const again = await lab.startMonitor();
  const [next] = await queued(again.logs, 1);
  t.is(next?.ip, "198.51.100.92");
});
