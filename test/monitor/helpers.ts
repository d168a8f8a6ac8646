import { appendFile } from "node:fs/promises";
import path from "node:path";
import type { ExecutionContext } from "ava";
import type * as zmq from "zeromq";
import {
  type MonitorOptions,
  type MonitorSettings,
  type RunningMonitor,
  startMonitor,
} from "../../src/monitor/daemon.js";
import type { BanEvent } from "../../src/protocol/event.js";
import { decodeFeed, TOPIC_UPDATE } from "../../src/protocol/feed.js";
import { verifyEvent } from "../../src/protocol/signature.js";
import { type PublisherSettings, type RunningPublisher, startPublisher } from "../../src/publisher/daemon.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import { waitFor } from "../harness/wait.js";
import { ANY_PORT, type TestCluster, type TestNode, testCluster } from "../helpers/cluster.js";
import { captureLogger, DEADLINE_MS, type LogLine } from "../helpers/logs.js";
import { publisherPorts, stopPublisher } from "../helpers/publisher.js";

export { captureLogger, DEADLINE_MS, type LogLine };

export const count = (lines: LogLine[], msg: string) => lines.filter((l) => l.msg === msg).length;

/** fail2ban 1.0.2's file format: `2026-11-29 00:43:01,986 fail2ban.actions        [18776]: NOTICE  [sshd] Ban 1.2.3.4`. */
export function f2bLine(message: string, logger = "actions", level = "NOTICE", pid = 4242): string {
  const d = new Date();
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const stamp = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())},${p(d.getMilliseconds(), 3)}`;
  return `${stamp} ${`fail2ban.${logger}`.padEnd(24)}[${pid}]: ${level.padEnd(7)} ${message}\n`;
}

export const banLine = (jail: string, ip: string) => f2bLine(`[${jail}] Ban ${ip}`);
export const unbanLine = (jail: string, ip: string) => f2bLine(`[${jail}] Unban ${ip}`);

/**
 * What subscribers receive: a subscriber with its own authorized key on the publisher's feed, every
 * update verified. Ready once a heartbeat arrived (the subscription is then live).
 */
export class FeedWatcher {
  readonly events: BanEvent[] = [];
  private heartbeats = 0;
  private readonly socket: zmq.Subscriber;
  private readonly loop: Promise<void>;

  constructor(endpoint: string, serverKey: Uint8Array, node: TestNode) {
    const socket = createClientSocket("subscriber", {
      identity: node.identity,
      serverKey,
      reconnectInterval: 100,
      reconnectMaxInterval: 500,
    });
    socket.subscribe(TOPIC_UPDATE);
    socket.connect(endpoint);
    this.socket = socket;
    this.loop = (async () => {
      for await (const frames of socket) {
        const message = decodeFeed(frames);
        if (!message.ok) continue;
        if (message.message.type === "heartbeat") this.heartbeats++;
        if (message.message.type !== "update") continue;
        const verified = await verifyEvent(message.message.payload, message.message.signature);
        if (verified.ok) this.events.push(verified.event);
      }
    })();
  }

  ready(): Promise<unknown> {
    return waitFor(() => (this.heartbeats > 0 ? true : undefined), {
      timeoutMs: DEADLINE_MS,
      what: "a heartbeat on the feed",
    });
  }

  /** Resolves once `n` updates arrived; returns all of them. */
  waitCount(n: number, ms = DEADLINE_MS): Promise<BanEvent[]> {
    return waitFor(() => (this.events.length >= n ? [...this.events] : undefined), {
      timeoutMs: ms,
      what: `${n} updates on the feed (have ${this.describe().join(", ") || "none"})`,
    });
  }

  /** Resolves once an update for `kind ip` arrived. */
  waitEvent(kind: "ban" | "unban", ip: string, ms = DEADLINE_MS): Promise<BanEvent> {
    return waitFor(() => this.events.find((e) => e.kind === kind && e.ip === ip), {
      timeoutMs: ms,
      what: `${kind} ${ip} on the feed (have ${this.describe().join(", ") || "none"})`,
    });
  }

  /** `kind jail ip` of every update, in order. */
  describe(): string[] {
    return this.events.map((e) => `${e.kind} ${e.jail} ${e.ip}`);
  }

  async close(): Promise<void> {
    this.socket.close();
    await this.loop;
  }
}

export interface MonitorLab {
  cluster: TestCluster;
  monitorNode: TestNode;
  publisherNode: TestNode;
  /** The fail2ban log the monitor reads (created empty). */
  logFile: string;
  /** The publisher's concrete submit endpoint (a free port, picked before anything starts). */
  submit: string;
  append(...lines: string[]): Promise<void>;
  /**
   * The real publisher on `submit` (or another node on another endpoint), with a subscriber watching
   * its feed. Closed at teardown.
   */
  startPublisher(
    events?: Record<string, unknown>,
    other?: { node: TestNode; submit: string },
  ): Promise<{
    publisher: RunningPublisher;
    feed: FeedWatcher;
    logs: LogLine[];
    close(): Promise<void>;
  }>;
  monitorConfig(monitor?: Record<string, unknown>, events?: Record<string, unknown>): MonitorSettings;
  /** The monitor in-process with `monitorConfig(...)` (and a clock, say). Closed at teardown. */
  startMonitor(
    monitor?: Record<string, unknown>,
    events?: Record<string, unknown>,
    options?: MonitorOptions,
  ): Promise<{ monitor: RunningMonitor; logs: LogLine[] }>;
}

/**
 * The config of a monitor run from the built CLI against the lab's publisher; `monitor` overrides
 * single keys (e.g. ackTimeout), `extra` adds other sections (e.g. logging).
 */
export function cliMonitorConfig(
  lab: MonitorLab,
  monitor: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Promise<string> {
  return lab.cluster.configFile(lab.monitorNode, {
    monitor: {
      log: lab.logFile,
      pollInterval: "100ms",
      ackTimeout: "1s",
      publishers: [{ submit: lab.submit, key: lab.publisherNode.publicKey }],
      ...monitor,
    },
    ...extra,
  });
}

/**
 * One monitor node and one publisher, keys made fresh and the monitor authorized, as an operator
 * would set them up; the monitor tails a plain file (or a real fail2ban's log with `logFile`).
 */
export async function monitorLab(
  t: ExecutionContext,
  options: { logFile?: string; authorize?: boolean } = {},
): Promise<MonitorLab> {
  const cluster = await testCluster(t);
  const monitorNode = await cluster.node("web1");
  const publisherNode = await cluster.node("pub1");
  const subscriberNode = await cluster.node("watcher");
  if (options.authorize !== false) await cluster.authorize(monitorNode, "monitor");
  await cluster.authorize(subscriberNode, "subscriber");
  const logFile = options.logFile ?? path.join(cluster.dir, "fail2ban.log");
  if (!options.logFile) await appendFile(logFile, "");
  // Where pub1 listened at port 0 a moment ago: the monitor may start before it listens again.
  const { submit } = await publisherPorts(t, cluster, publisherNode);

  const monitorConfig = (monitor: Record<string, unknown> = {}, events: Record<string, unknown> = {}) => {
    const config = cluster.config(monitorNode, {
      monitor: {
        log: logFile,
        pollInterval: "100ms",
        ackTimeout: "1s",
        // Not the host's fail2ban: a test that asks one asks the lab's (ban-time.test.ts).
        banTimeFrom: "config",
        publishers: [{ submit, key: publisherNode.publicKey }],
        ...monitor,
      },
      events,
    });
    if (!config.monitor) throw new Error("no monitor section");
    return config as MonitorSettings;
  };

  return {
    cluster,
    monitorNode,
    publisherNode,
    logFile,
    submit,
    append: (...lines) => appendFile(logFile, lines.join("")),
    async startPublisher(events = {}, other = { node: publisherNode, submit }) {
      const config = cluster.config(other.node, {
        publisher: { submit: other.submit, feed: ANY_PORT, snapshot: ANY_PORT, keys: cluster.keysDir },
        events,
      });
      const { logger, lines } = captureLogger();
      const publisher = await startPublisher(config as PublisherSettings, logger);
      const feed = new FeedWatcher(publisher.endpoints.feed, other.node.identity.curvePublic, subscriberNode);
      let closing: Promise<void> | undefined;
      const close = () => {
        closing ??= feed.close().then(() => stopPublisher(publisher));
        return closing;
      };
      t.teardown(close);
      await feed.ready();
      return { publisher, feed, logs: lines, close };
    },
    monitorConfig,
    async startMonitor(monitor = {}, events = {}, options = {}) {
      const { logger, lines } = captureLogger();
      const running = await startMonitor(monitorConfig(monitor, events), logger, options);
      t.teardown(() => running.close());
      return { monitor: running, logs: lines };
    },
  };
}
