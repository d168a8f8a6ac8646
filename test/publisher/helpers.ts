import { appendFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { ExecutionContext } from "ava";
import type * as zmq from "zeromq";
import { type RunningMonitor, startMonitor } from "../../src/monitor/daemon.js";
import { decodeFeed, type FeedMessage, TOPIC_UPDATE } from "../../src/protocol/feed.js";
import { encodeEventFrames } from "../../src/protocol/frames.js";
import {
  decodeSnapshotReply,
  encodeCredit,
  encodeSnapshotRequest,
  MAX_CHUNK_BYTES,
  type SnapshotEntry,
} from "../../src/protocol/snapshot.js";
import { decodeSubmitReply, type SubmitReply } from "../../src/protocol/submit.js";
import type { RunningPublisher } from "../../src/publisher/daemon.js";
import { type RunningSubscriber, startSubscriber } from "../../src/subscriber/daemon.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import { FAST_RECONNECT, type TestCluster, type TestNode, testLogger } from "../helpers/cluster.js";
import { captureLogger, DEADLINE_MS } from "../helpers/logs.js";
import type { TestPublisher } from "../helpers/publisher.js";
import { EventLog, Recorder } from "../transport/helpers.js";

export { startTestPublisher, type TestPublisher } from "../helpers/publisher.js";
export { DEADLINE_MS, FAST_RECONNECT };

/** What a client needs of a publisher: its CURVE key and endpoints (in-process or the CLI's). */
export interface Reachable {
  node: { identity: { curvePublic: Uint8Array } };
  running: Pick<RunningPublisher, "endpoints">;
}

export { type BanFields, sign } from "../helpers/events.js";

/** A monitor's REQ socket, driven by hand: one event, one reply. */
export interface Submitter {
  socket: zmq.Request;
  events: EventLog;
  submit(event: { payload: Buffer; signature: Buffer }): Promise<SubmitReply>;
  send(frames: Buffer[]): Promise<SubmitReply>;
}

export function submitter(t: ExecutionContext, node: TestNode, publisher: Reachable): Submitter {
  const socket = createClientSocket("request", {
    identity: node.identity,
    serverKey: publisher.node.identity.curvePublic,
    ...FAST_RECONNECT,
  });
  t.teardown(() => socket.close());
  socket.receiveTimeout = DEADLINE_MS;
  const events = new EventLog(socket);
  socket.connect(publisher.running.endpoints.submit);
  const send = async (frames: Buffer[]) => {
    await socket.send(frames);
    const reply = decodeSubmitReply(await socket.receive());
    if (!reply.ok) throw new Error(`malformed submit reply (${reply.reason})`);
    return reply.message;
  };
  return {
    socket,
    events,
    send,
    submit: (event) => send(encodeEventFrames(event.payload, event.signature)),
  };
}

/** A raw SUB on the feed recording every decoded message; `ready` resolves with the first heartbeat. */
export interface FeedClient {
  socket: zmq.Subscriber;
  events: EventLog;
  messages: Recorder<FeedMessage>;
  ready: Promise<FeedMessage>;
}

export function feedClient(t: ExecutionContext, node: TestNode, publisher: Reachable): FeedClient {
  const socket = createClientSocket("subscriber", {
    identity: node.identity,
    serverKey: publisher.node.identity.curvePublic,
    ...FAST_RECONNECT,
  });
  t.teardown(() => socket.close());
  const events = new EventLog(socket);
  const messages = new Recorder<FeedMessage>();
  socket.subscribe(TOPIC_UPDATE);
  socket.connect(publisher.running.endpoints.feed);
  void (async () => {
    for await (const frames of socket) {
      const decoded = decodeFeed(frames);
      if (!decoded.ok) throw new Error(`malformed feed message (${decoded.reason})`);
      messages.record(decoded.message);
    }
  })();
  const ready = messages.waitFor((m) => m.type === "heartbeat", "the first heartbeat", DEADLINE_MS);
  return { socket, events, messages, ready };
}

/** One snapshot over a fresh DEALER, as a (re)joining subscriber fetches it. */
export async function fetchSnapshot(
  t: ExecutionContext,
  node: TestNode,
  publisher: Reachable,
): Promise<{ seq: number; entries: SnapshotEntry[]; chunks: number }> {
  const dealer = createClientSocket("dealer", {
    identity: node.identity,
    serverKey: publisher.node.identity.curvePublic,
    // A chunk of 200 entries is larger than the default frame limit, as for a real subscriber.
    maxMessageSize: MAX_CHUNK_BYTES,
    ...FAST_RECONNECT,
  });
  t.teardown(() => dealer.close());
  dealer.receiveTimeout = DEADLINE_MS;
  try {
    dealer.connect(publisher.running.endpoints.snapshot);
    await dealer.send(encodeSnapshotRequest());
    const entries: SnapshotEntry[] = [];
    for (let chunks = 0; ; chunks++) {
      const reply = decodeSnapshotReply(await dealer.receive());
      if (!reply.ok) throw new Error(`malformed snapshot reply (${reply.reason})`);
      if (reply.message.type === "end") {
        t.is(reply.message.count, entries.length, "snapshot count");
        return { seq: reply.message.seq, entries, chunks };
      }
      if (reply.message.type === "busy") throw new Error("publisher busy");
      entries.push(...reply.message.entries);
      // One credit per chunk: the publisher streams a window ahead of what was received.
      await dealer.send(encodeCredit());
    }
  } finally {
    dealer.close();
  }
}

/** `jail ip` keys of snapshot entries (payloads are canonical JSON, signed). */
export function entryKeys(entries: readonly { payload: Buffer }[]): string[] {
  return entries
    .map((e) => keyOf(JSON.parse(e.payload.toString("utf8")) as { jail: string; ip: string }))
    .sort();
}

export const keyOf = (ban: { jail: string; ip: string }): string => `${ban.jail} ${ban.ip}`;

/** A fail2ban 1.0 log line, the way the monitor reads it. */
export function banLine(jail: string, ip: string, kind: "Ban" | "Unban" = "Ban", pid = 4242): string {
  return `2026-11-29 01:50:00,123 fail2ban.actions        [${pid}]: NOTICE  [${jail}] ${kind} ${ip}\n`;
}

/**
 * Nodes with their keys in authorized/<role>s, before the publisher starts: so that its first load
 * has them (libzmq does not retry a connection that ZAP refused).
 */
export async function authorized(
  cluster: TestCluster,
  role: "monitor" | "subscriber",
  ...names: string[]
): Promise<TestNode[]> {
  const out: TestNode[] = [];
  for (const name of names) {
    const node = await cluster.node(name);
    await cluster.authorize(node, role);
    out.push(node);
  }
  return out;
}

export interface TestMonitor {
  node: TestNode;
  log: string;
  running: RunningMonitor;
  ban(ip: string, jail?: string): Promise<void>;
}

/** A monitor (authorized beforehand) on its own temp log file, delivering to every given publisher. */
export async function startTestMonitor(
  t: ExecutionContext,
  cluster: TestCluster,
  node: TestNode,
  publishers: readonly TestPublisher[],
): Promise<TestMonitor> {
  const log = path.join(cluster.dir, `${node.name}-fail2ban.log`);
  await writeFile(log, "");
  const config = cluster.config(node, {
    monitor: {
      log,
      pollInterval: "100ms",
      ackTimeout: "5s",
      publishers: publishers.map((p) => ({ submit: p.running.endpoints.submit, key: p.node.publicKey })),
    },
  });
  const running = await startMonitor(config as Parameters<typeof startMonitor>[0], testLogger());
  t.teardown(() => running.close());
  return { node, log, running, ban: (ip, jail = "sshd") => appendFile(log, banLine(jail, ip)) };
}

export interface TestSubscriber {
  node: TestNode;
  running: RunningSubscriber;
  /** `jail ip` of every ban the subscriber holds. */
  bans(): string[];
  /** `kind jail ip` of every request its action was given: what fail2ban would have been asked. */
  actions(): string[];
}

/**
 * A subscriber (authorized beforehand) following every given publisher, through the `log` action,
 * into each event's own jail unless `jail` names one cluster jail.
 */
export async function startTestSubscriber(
  t: ExecutionContext,
  cluster: TestCluster,
  node: TestNode,
  publishers: readonly TestPublisher[],
  options: { jail?: string } = {},
): Promise<TestSubscriber> {
  const config = cluster.config(node, {
    subscriber: {
      publishers: publishers.map((p) => ({
        feed: p.running.endpoints.feed,
        snapshot: p.running.endpoints.snapshot,
        key: p.node.publicKey,
      })),
      action: { type: "log", jail: options.jail ?? "same" },
    },
  });
  const { logger, lines } = captureLogger();
  const running = await startSubscriber(config as Parameters<typeof startSubscriber>[0], logger);
  t.teardown(() => running.close());
  return {
    node,
    running,
    bans: () => running.store.applied().map(keyOf).sort(),
    actions: () => lines.filter((l) => l.msg === "cluster event").map((l) => `${l.kind} ${l.jail} ${l.ip}`),
  };
}
