import { readFile } from "node:fs/promises";
import type { ExecutionContext } from "ava";
import type { Logger } from "../../src/logging.js";
import { type PublisherSettings, type RunningPublisher, startPublisher } from "../../src/publisher/daemon.js";
import { listeningInodes, tcpPort } from "../../src/transport/listener-handover.js";
import { waitFor } from "../harness/wait.js";
import { ANY_PORT, type TestCluster, type TestNode, testLogger } from "./cluster.js";
import { DEADLINE_MS } from "./logs.js";

export interface PublisherEndpoints {
  submit: string;
  feed: string;
  snapshot: string;
}

export interface PublisherOptions {
  /** The publisher's node name; default "pub". */
  name?: string;
  /** Merged into the publisher section: endpoints (default: loopback, port 0), limits, … */
  publisher?: Record<string, unknown>;
  /** The events section, when a test narrows the time window. */
  events?: Record<string, unknown>;
  /** Default: silent unless F2BZ_TEST_LOG is set. */
  logger?: Logger;
}

export interface TestPublisher {
  node: TestNode;
  /** The running daemon; replaced by `restart()`. */
  running: RunningPublisher;
  /** What goes under subscriber.publishers: the endpoints it bound and its pinned key. */
  readonly entry: { feed: string; snapshot: string; key: string };
  /** What goes under monitor.publishers. */
  readonly monitorEntry: { submit: string; key: string };
  /**
   * Closes it, waits until its ports are released, and starts it again on the same state directory
   * and the same configured endpoints (port 0 draws new ports).
   */
  restart(): Promise<RunningPublisher>;
}

/**
 * A publisher in-process, with its keys in the cluster's key directory and its endpoints on
 * loopback at port 0 unless `options.publisher` names them; read the bound ones back from
 * `running.endpoints` (what its "listening" log line says). Closed at teardown.
 */
export async function startTestPublisher(
  t: ExecutionContext,
  cluster: TestCluster,
  options: PublisherOptions = {},
): Promise<TestPublisher> {
  const node = await cluster.node(options.name ?? "pub");
  const config = cluster.config(node, {
    publisher: {
      submit: ANY_PORT,
      feed: ANY_PORT,
      snapshot: ANY_PORT,
      keys: cluster.keysDir,
      ...options.publisher,
    },
    ...(options.events ? { events: options.events } : {}),
  }) as PublisherSettings;
  const start = async () => {
    const running = await startPublisher(config, options.logger ?? testLogger());
    t.teardown(() => running.close());
    return running;
  };
  const handle: TestPublisher = {
    node,
    running: await start(),
    get entry() {
      const { feed, snapshot } = handle.running.endpoints;
      return { feed, snapshot, key: node.publicKey };
    },
    get monitorEntry() {
      return { submit: handle.running.endpoints.submit, key: node.publicKey };
    },
    async restart() {
      await stopPublisher(handle.running);
      handle.running = await start();
      return handle.running;
    },
  };
  return handle;
}

/**
 * Concrete endpoints for a config written before its publisher runs (a monitor started first, a
 * publisher that is not there): `node`'s publisher is started at port 0, the ports it bound are read
 * back, and it stops again; this returns once nothing listens on them (libzmq closes a listener
 * asynchronously). A later bind of these ports cannot meet EADDRINUSE but through another bind at
 * port 0 drawing this very port in between: Linux draws those at random from the odd half of its
 * ephemeral range (connect() takes the even half), some 14,000 ports, none of them in use.
 */
export async function publisherPorts(
  t: ExecutionContext,
  cluster: TestCluster,
  node: TestNode,
): Promise<PublisherEndpoints> {
  const publisher = await startTestPublisher(t, cluster, { name: node.name });
  await stopPublisher(publisher.running);
  return publisher.running.endpoints;
}

/**
 * Closes a publisher and returns once nothing listens on its ports any more: so that the same
 * endpoints can be bound again at once (libzmq closes a listener asynchronously).
 */
export async function stopPublisher(running: RunningPublisher): Promise<void> {
  await running.close();
  const ports = Object.values(running.endpoints).flatMap((endpoint) => tcpPort(endpoint) ?? []);
  await waitFor(async () => ((await listening(ports)) ? undefined : true), {
    timeoutMs: DEADLINE_MS,
    what: `ports ${ports.join(", ")} to be released`,
  });
}

/** Whether any socket of this network namespace listens on one of `ports`. */
async function listening(ports: readonly number[]): Promise<boolean> {
  for (const table of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
    const text = await readFile(table, "utf8").catch(() => "");
    if (ports.some((port) => listeningInodes(text, port).length > 0)) return true;
  }
  return false;
}
