import type { ExecutionContext } from "ava";
import { waitFor } from "../harness/wait.js";
import { type Daemon, spawnDaemon } from "../helpers/cli.js";
import { ANY_PORT, type TestCluster, type TestNode, testCluster } from "../helpers/cluster.js";
import { metricsPort, request } from "../metrics/helpers.js";
import type { Reachable } from "../publisher/helpers.js";

/** Messages per target: enough to meet every mutation many times, a few seconds on two shared cores. */
export const MESSAGES = Number(process.env.F2BZ_FUZZ_MESSAGES ?? 2_000);
/** A daemon's resident set may grow this much over a fuzz run: buffers and caches, not a leak. */
export const RSS_BOUND_BYTES = 50 * 1024 * 1024;
/**
 * What CURVE adds to a frame on the wire (MESSAGE command name, nonce, MAC, flags): libzmq applies
 * maxMessageSize to the encrypted frame, so the largest frame that reaches the application is this
 * much smaller (measured: 991 of 1024 passes, 992 ends the connection). Larger ones never reach the
 * daemon's code: libzmq drops the connection, which the "over the limit" cases check separately.
 */
export const CURVE_FRAME_OVERHEAD = 33;

/** The largest frame a CURVE socket with this maxMessageSize hands to the application. */
export const deliverable = (maxMessageSize: number): number => maxMessageSize - CURVE_FRAME_OVERHEAD;

/** Generous: two shared cores; every wait ends as soon as its condition holds. */
export const DEADLINE_MS = 20_000;

/** Every sample of a metrics page by its series text, e.g. `f2bz_x_total{process="publisher"}`. */
export type Samples = ReadonlyMap<string, number>;

export function parseSamples(page: string): Samples {
  const samples = new Map<string, number>();
  for (const line of page.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** The sum over every series of a family (`f2bz_events_dropped_total` → all reasons). */
export function family(samples: Samples, name: string): number {
  let sum = 0;
  for (const [series, value] of samples) {
    if (series === name || series.startsWith(`${name}{`)) sum += value;
  }
  return sum;
}

/** `after - before` of every series that changed, for a failure message. */
export function changes(before: Samples, after: Samples): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [series, value] of after) {
    const delta = value - (before.get(series) ?? 0);
    if (delta !== 0) out[series] = delta;
  }
  return out;
}

export interface FuzzPublisher extends Reachable {
  cluster: TestCluster;
  daemon: Daemon;
  pid: number;
  monitor: TestNode;
  subscriber: TestNode;
  scrape(): Promise<Samples>;
}

/**
 * The built CLI's publisher, as an operator starts it, with metrics on a loopback port, one
 * authorized monitor and one authorized subscriber. Limits high enough that a fuzz run's valid
 * events are not rate-limited (a refusal would still be counted, but the liveness probe needs an ack).
 */
export async function spawnPublisher(t: ExecutionContext): Promise<FuzzPublisher> {
  const cluster = await testCluster(t);
  const node = await cluster.node("pub");
  const monitor = await cluster.node("mon");
  const subscriber = await cluster.node("sub");
  await cluster.authorize(monitor, "monitor");
  await cluster.authorize(subscriber, "subscriber");
  const config = await cluster.configFile(node, {
    publisher: {
      submit: ANY_PORT,
      feed: ANY_PORT,
      snapshot: ANY_PORT,
      keys: cluster.keysDir,
      perOriginRate: 10_000,
      perOriginBurst: 100_000,
      globalRate: 100_000,
    },
    metrics: { listen: "127.0.0.1:0" },
    logging: { level: "info" },
  });
  const daemon = spawnDaemon(t, ["publisher", "--config", config]);
  await daemon.started("publisher");
  const port = metricsPort(daemon.stdout());
  const endpoint = (name: string) => {
    const found = new RegExp(`"${name}":"(tcp://[^"]+)"`).exec(daemon.stdout())?.[1];
    if (found === undefined)
      throw new Error(`no ${name} endpoint in the publisher's log: ${daemon.stdout()}`);
    return found;
  };
  return {
    cluster,
    daemon,
    pid: daemon.child.pid!,
    monitor,
    subscriber,
    node,
    running: {
      endpoints: { submit: endpoint("submit"), feed: endpoint("feed"), snapshot: endpoint("snapshot") },
    },
    scrape: async () => parseSamples((await request(port)).body),
  };
}

/** Waits until `read` returns `expected` (counters catch up asynchronously); returns the last value. */
export async function settle(read: () => Promise<number>, expected: number, what: string): Promise<number> {
  let last = Number.NaN;
  try {
    await waitFor(
      async () => {
        last = await read();
        return last >= expected ? true : undefined;
      },
      { timeoutMs: DEADLINE_MS, what },
    );
  } catch {
    // The caller's assertion reports the value it saw.
  }
  return last;
}

/** Rejects with `what` if `promise` takes longer than the deadline: a hang is a failure, not a wait. */
export function within<T>(promise: Promise<T>, what: string, ms = DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
