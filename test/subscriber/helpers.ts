import type { ExecutionContext } from "ava";
import type { Logger } from "../../src/logging.js";
import { type MonitorSettings, type RunningMonitor, startMonitor } from "../../src/monitor/daemon.js";
import { encodeEventFrames } from "../../src/protocol/frames.js";
import type { SignedEvent } from "../../src/protocol/signature.js";
import { decodeSubmitReply, type SubmitReply } from "../../src/protocol/submit.js";
import {
  type RunningSubscriber,
  type SubscriberSettings,
  startSubscriber,
} from "../../src/subscriber/daemon.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import { waitFor } from "../harness/wait.js";
import { type TestCluster, type TestNode, testLogger } from "../helpers/cluster.js";
import { captureLogger, DEADLINE_MS, type LogLine } from "../helpers/logs.js";
import type { TestPublisher } from "../helpers/publisher.js";

export { captureLogger, DEADLINE_MS, type LogLine };

export function waitLine(
  lines: readonly LogLine[],
  match: (line: LogLine) => boolean,
  what: string,
  timeoutMs = DEADLINE_MS,
): Promise<LogLine> {
  return waitFor(() => lines.find(match), { timeoutMs, what: `log line: ${what}` });
}

export function waitCounter(
  counters: { get(name: string): number },
  name: string,
  atLeast = 1,
  timeoutMs = DEADLINE_MS,
): Promise<number> {
  return waitFor(
    () => {
      const value = counters.get(name);
      return value >= atLeast ? value : undefined;
    },
    { timeoutMs, what: `counter ${name} >= ${atLeast}` },
  );
}

export { startTestPublisher, type TestPublisher } from "../helpers/publisher.js";

export async function startTestSubscriber(
  t: ExecutionContext,
  cluster: TestCluster,
  node: TestNode,
  subscriber: Record<string, unknown>,
  options: { logger?: Logger; events?: Record<string, unknown> } = {},
): Promise<RunningSubscriber> {
  const config = cluster.config(node, {
    subscriber,
    ...(options.events ? { events: options.events } : {}),
  });
  const running = await startSubscriber(config as SubscriberSettings, options.logger ?? testLogger());
  t.teardown(() => running.close());
  return running;
}

export async function startTestMonitor(
  t: ExecutionContext,
  cluster: TestCluster,
  node: TestNode,
  monitor: Record<string, unknown>,
): Promise<RunningMonitor> {
  const config = cluster.config(node, { monitor: { pollInterval: "200ms", ...monitor } });
  const running = await startMonitor(config as MonitorSettings, testLogger());
  t.teardown(() => running.close());
  return running;
}

export { sign } from "../helpers/events.js";

/**
 * Submits signed events to a publisher as a monitor would (REQ, CURVE, one event per request) and
 * returns each reply: the way to put crafted events (short expiry, many bans) into a real publisher.
 */
export async function submit(
  publisher: TestPublisher,
  monitor: TestNode,
  events: readonly SignedEvent[],
): Promise<SubmitReply[]> {
  const socket = createClientSocket("request", {
    identity: monitor.identity,
    serverKey: publisher.node.identity.curvePublic,
  });
  socket.receiveTimeout = DEADLINE_MS;
  socket.connect(publisher.running.endpoints.submit);
  try {
    const replies: SubmitReply[] = [];
    for (const event of events) {
      await socket.send(encodeEventFrames(event.payload, event.signature));
      const reply = decodeSubmitReply(await socket.receive());
      if (!reply.ok) throw new Error(`malformed reply from the publisher (${reply.reason})`);
      replies.push(reply.message);
    }
    return replies;
  } finally {
    socket.close();
  }
}
