import { isWildcardHost, parseEndpoint } from "./endpoint.js";
import { keyName } from "./issues.js";
import { formatListen, type ListenAddress } from "./loopback.js";

/**
 * Checks that span keys, on the parsed config, so that `check-config` refuses what a daemon would
 * refuse or trip over at start. One file configures one host: everything it binds shares that
 * host's ports.
 */

/** The parts of the parsed config these checks read (structural, to keep the schema's type flat). */
export interface CrossCheckInput {
  publisher?: { submit: string; feed: string; snapshot: string } | undefined;
  monitor?: { publishers: readonly { submit: string }[] } | undefined;
  subscriber?: { publishers: readonly { feed: string; snapshot: string }[] } | undefined;
  banHelper?: unknown;
  metrics?: Partial<Record<"listen" | Daemon, ListenAddress | undefined>> | undefined;
}

export interface CrossIssue {
  path: (string | number)[];
  /** A phrase that follows "expected". */
  expected: string;
  /** The value in effect, for a key that the file leaves at its default. */
  value: string;
  /** The same clash seen from the other key: reported instead when only that one is written. */
  other?: CrossIssue;
}

type Daemon = "publisher" | "monitor" | "subscriber" | "banHelper";

interface Bound {
  path: (string | number)[];
  value: string;
  /** tcp host and port, or an ipc path as host with port 0. */
  host: string;
  port: number;
}

export function crossCheck(config: CrossCheckInput): CrossIssue[] {
  const issues: CrossIssue[] = [];

  // The outbox names a publisher by its endpoint, a receiver is keyed by it: each endpoint once.
  const connects: { path: (string | number)[]; value: string }[] = [];
  for (const [i, p] of (config.monitor?.publishers ?? []).entries()) {
    connects.push({ path: ["monitor", "publishers", i, "submit"], value: p.submit });
  }
  for (const [i, p] of (config.subscriber?.publishers ?? []).entries()) {
    connects.push({ path: ["subscriber", "publishers", i, "feed"], value: p.feed });
    connects.push({ path: ["subscriber", "publishers", i, "snapshot"], value: p.snapshot });
  }
  for (const [i, c] of connects.entries()) {
    const first = connects.findIndex(
      (d) => d.value === c.value && d.path[0] === c.path[0] && d.path.at(-1) === c.path.at(-1),
    );
    if (first !== i) {
      issues.push({
        path: c.path,
        expected: `an endpoint not already named by ${quoteKey(connects[first]!.path)}`,
        value: c.value,
      });
    }
  }

  const bound: Bound[] = [];
  if (config.publisher) {
    for (const key of ["submit", "feed", "snapshot"] as const) {
      const value = config.publisher[key];
      const parsed = parseEndpoint(value, "bind");
      if (!parsed.ok) continue;
      const e = parsed.endpoint;
      if (e.transport === "ipc")
        bound.push({ path: ["publisher", key], value, host: `ipc:${e.path}`, port: 0 });
      else if (e.port !== "*") bound.push({ path: ["publisher", key], value, host: e.host, port: e.port });
    }
  }
  // Each daemon of the host serves metrics at its own key, else at `listen` (see metricsAddress).
  const users = new Map<string, Daemon[]>();
  for (const daemon of ["publisher", "monitor", "subscriber", "banHelper"] as const) {
    if (config[daemon] === undefined) continue;
    const key = daemon === "banHelper" || config.metrics?.[daemon] ? daemon : "listen";
    const address = config.metrics?.[key];
    if (!address) continue;
    users.set(key, [...(users.get(key) ?? []), daemon]);
    if (users.get(key)!.length > 1 || address.port === 0) continue;
    bound.push({ path: ["metrics", key], value: formatListen(address), ...address });
  }
  for (const [key, daemons] of users) {
    if (daemons.length < 2) continue;
    issues.push({
      path: ["metrics", key],
      expected: `one daemon per port, not ${daemons.join(" and ")} (give each its own metrics.<daemon>)`,
      value: formatListen(config.metrics![key as "listen"]!),
    });
  }
  for (const [i, b] of bound.entries()) {
    const first = bound.findIndex((a) => a.port === b.port && sameHost(a.host, b.host));
    if (first !== i) {
      const a = bound[first]!;
      const clash = (x: Bound, y: Bound): CrossIssue => ({
        path: x.path,
        expected: `a port that ${quoteKey(y.path)} does not use (${y.value})`,
        value: x.value,
      });
      issues.push({ ...clash(b, a), other: clash(a, b) });
    }
  }
  return issues;
}

const quoteKey = (p: readonly (string | number)[]) => `'${keyName(p)}'`;

/** Two listeners collide on one port when they name the same address or either takes them all. */
const sameHost = (a: string, b: string) =>
  a.toLowerCase() === b.toLowerCase() ||
  (!a.startsWith("ipc:") && !b.startsWith("ipc:") && (isWildcardHost(a) || isWildcardHost(b)));
