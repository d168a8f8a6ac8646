import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { F2bzError } from "../errors.js";
import {
  createCluster,
  type DemoCluster,
  type DemoEndpoints,
  demoAddresses,
  fail2banLine,
  writeNodeConfigs,
} from "./cluster.js";
import { type AppliedReport, type SentEvent, type Summary, summarize } from "./summary.js";

export interface DemoOptions {
  nodes: number;
  events: number;
  durationMs: number;
  json: boolean;
  keep: boolean;
  /** The f2bz executable script, run with this Node for every child. */
  bin: string;
  out: (line: string) => void;
  signal: AbortSignal;
}

export interface DemoResult extends Summary {
  nodes: number;
  bans: number;
  unbans: number;
  published: Record<string, number>;
  unbanLatencyMs: Summary["latencyMs"];
  cleanExit: boolean;
  durationMs: number;
  dir?: string;
}

type LogLine = Record<string, unknown> & { msg?: string; time?: number; node?: string };

interface Child {
  name: string;
  process: ChildProcess;
  lines: LogLine[];
  waiters: { test: (l: LogLine) => boolean; resolve: () => void }[];
  stderr: string[];
}

const READY_TIMEOUT_MS = 30_000;
/** After the last line written: the monitor holds unbans 5 s (interpret.ts), plus delivery. */
const SETTLE_MS = 15_000;

/**
 * Runs a whole cluster on 127.0.0.1 from a temporary directory: one publisher and N nodes, each a
 * monitor and a subscriber (dry-run) as real child processes speaking CURVE, then writes simulated
 * fail2ban bans and unbans into the nodes' logs and watches them arrive at every other node.
 */
export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "f2bz-demo-"));
  const children: Child[] = [];
  const say = (line: string) => {
    if (!o.json) o.out(line);
  };
  try {
    const cluster = await createCluster(dir, o.nodes);
    say(
      `f2bz demo: 1 publisher and ${o.nodes} nodes (monitor + subscriber each) on 127.0.0.1, fresh keys in ${dir}`,
    );
    const publisher = startChild(o.bin, "publisher", "publisher", cluster.publisherConfig, children);
    const bound = boundEndpoints(await waitFor(publisher, (l) => l.msg === "listening", o.signal));
    await writeNodeConfigs(cluster, bound);
    say(`  publisher  submit ${bound.submit}, feed ${bound.feed}, snapshot ${bound.snapshot}`);
    for (const node of cluster.nodes) {
      startChild(o.bin, `${node.name}/monitor`, "monitor", node.config, children);
      startChild(o.bin, `${node.name}/subscriber`, "subscriber", node.config, children);
    }
    for (const child of children.slice(1)) {
      const ready = child.name.endsWith("/monitor") ? "reading fail2ban's log" : "snapshot loaded";
      await waitFor(child, (l) => l.msg === ready, o.signal);
    }
    say(
      `  ${cluster.nodes.map((n) => n.name).join(", ")}  ready; writing ${o.events} bans (and their unbans) into their fail2ban logs`,
    );
    say("");

    const sent = await simulate(cluster, o);
    const result = await collect(cluster, sent, children, o, say);
    const cleanExit = await stopAll(children);
    const summary: DemoResult = {
      ...result,
      cleanExit,
      ok: result.ok && cleanExit,
      durationMs: Date.now() - started,
    };
    if (o.keep) summary.dir = dir;
    return summary;
  } finally {
    await stopAll(children);
    if (!o.keep) await fs.rm(dir, { recursive: true, force: true });
  }
}

/** The ports the publisher bound, from its "listening" line. */
function boundEndpoints(line: LogLine): DemoEndpoints {
  const { submit, feed, snapshot } = line;
  if (typeof submit !== "string" || typeof feed !== "string" || typeof snapshot !== "string") {
    throw new F2bzError(
      "DEMO_FAILED",
      `publisher's listening line lacks its endpoints: '${JSON.stringify(line)}'`,
    );
  }
  return { submit, feed, snapshot };
}

function startChild(bin: string, name: string, command: string, config: string, children: Child[]): Child {
  const output = createWriteStream(
    path.join(path.dirname(config), "logs", `${name.replace("/", "-")}.jsonl`),
  );
  const child: Child = {
    name,
    process: spawn(process.execPath, [bin, command, "--config", config], {
      stdio: ["ignore", "pipe", "pipe"],
    }),
    lines: [],
    waiters: [],
    stderr: [],
  };
  createInterface({ input: child.process.stdout! }).on("line", (text) => {
    output.write(`${text}\n`);
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      return;
    }
    child.lines.push(line);
    for (const w of [...child.waiters]) {
      if (w.test(line)) {
        child.waiters.splice(child.waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  createInterface({ input: child.process.stderr! }).on("line", (text) => child.stderr.push(text));
  child.process.once("exit", () => output.end());
  children.push(child);
  return child;
}

async function waitFor(child: Child, test: (l: LogLine) => boolean, signal: AbortSignal): Promise<LogLine> {
  const found = () => child.lines.find(test);
  if (!found()) {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(failure(child, "did not become ready in time")),
        READY_TIMEOUT_MS,
      );
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      child.waiters.push({ test, resolve: done });
      child.process.once("exit", (code) => {
        clearTimeout(timer);
        reject(failure(child, `exited with code ${code}`));
      });
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new F2bzError("DEMO_FAILED", "interrupted"));
      });
    });
  }
  return found()!;
}

function failure(child: Child, what: string): F2bzError {
  const detail = child.stderr.at(-1) ?? JSON.stringify(child.lines.at(-1) ?? {});
  return new F2bzError("DEMO_FAILED", `${child.name} ${what}: ${detail.slice(0, 300)}`);
}

/** Writes the bans spread over the duration, each unban half the duration after its ban. */
async function simulate(cluster: DemoCluster, o: DemoOptions): Promise<SentEvent[]> {
  const sent: SentEvent[] = [];
  const step = o.events > 1 ? o.durationMs / o.events : 0;
  const unbanAfter = Math.max(1000, o.durationMs / 2);
  const writes: { at: number; kind: "ban" | "unban"; index: number }[] = [];
  for (let i = 0; i < o.events; i++) {
    writes.push(
      { at: i * step, kind: "ban", index: i },
      { at: i * step + unbanAfter, kind: "unban", index: i },
    );
  }
  writes.sort((a, b) => a.at - b.at);
  const addresses = demoAddresses(o.events);
  const start = Date.now();
  for (const w of writes) {
    if (o.signal.aborted) throw new F2bzError("DEMO_FAILED", "interrupted");
    const wait = start + w.at - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const node = cluster.nodes[w.index % cluster.nodes.length]!;
    const ip = addresses[w.index]!;
    const jail = ["sshd", "nginx-http-auth", "postfix"][w.index % 3]!;
    const writtenAt = Date.now();
    await fs.appendFile(node.log, fail2banLine(new Date(writtenAt), node.pid, jail, w.kind, ip));
    sent.push({ key: `${w.kind} ${ip}`, kind: w.kind, ip, origin: node.name, writtenAt });
  }
  return sent;
}

/** Waits until every event reached every other node (or the deadline), printing each as it does. */
async function collect(
  cluster: DemoCluster,
  sent: SentEvent[],
  children: Child[],
  o: DemoOptions,
  say: (l: string) => void,
): Promise<Omit<DemoResult, "cleanExit" | "durationMs">> {
  const names = cluster.nodes.map((n) => n.name);
  const reportsOf = (): AppliedReport[] =>
    children
      .filter((c) => c.name.endsWith("/subscriber"))
      .flatMap((c) =>
        c.lines
          .filter((l) => typeof l.msg === "string" && l.msg.startsWith("dry-run: would"))
          .map((l) => ({
            node: c.name.split("/")[0]!,
            kind: l.kind as "ban" | "unban",
            ip: String(l.ip),
            at: Number(l.time),
          })),
      );
  const printed = new Set<string>();
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const reports = reportsOf();
    for (const event of sent) {
      if (printed.has(event.key)) continue;
      const arrivals = reports.filter(
        (r) => r.kind === event.kind && r.ip === event.ip && r.node !== event.origin,
      );
      if (new Set(arrivals.map((a) => a.node)).size < names.length - 1) continue;
      printed.add(event.key);
      const hops = arrivals.map((a) => `${a.node} ${Math.max(0, a.at - event.writtenAt)} ms`).join(", ");
      say(`  ${event.kind.padEnd(5)} ${event.ip.padEnd(16)} ${event.origin} → ${hops}`);
    }
    if (printed.size === sent.length || Date.now() > deadline || o.signal.aborted) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // Late duplicates show up in the same breath as the last arrivals: wait a moment for them.
  await new Promise((r) => setTimeout(r, 300));
  const reports = reportsOf();
  const bans = summarize(
    names,
    sent.filter((e) => e.kind === "ban"),
    reports.filter((r) => r.kind === "ban"),
  );
  const all = summarize(names, sent, reports);
  const unbans = summarize(
    names,
    sent.filter((e) => e.kind === "unban"),
    reports.filter((r) => r.kind === "unban"),
  );
  const published: Record<string, number> = {};
  let echoedPublications = 0;
  for (const c of children.filter((c) => c.name.endsWith("/monitor"))) {
    const node = c.name.split("/")[0]!;
    const own = new Set(sent.filter((e) => e.origin === node).map((e) => e.key));
    const queued = c.lines.filter((l) => l.msg === "event queued");
    published[node] = queued.length;
    echoedPublications += queued.filter((l) => !own.has(`${String(l.kind)} ${String(l.ip)}`)).length;
  }
  const echoed = all.echoed + echoedPublications;
  return {
    ...all,
    nodes: names.length,
    bans: bans.sent,
    unbans: unbans.sent,
    echoed,
    published,
    latencyMs: bans.latencyMs,
    unbanLatencyMs: unbans.latencyMs,
    ok: all.ok && echoed === 0,
  };
}

/** SIGTERM to every child, SIGKILL to any still running after 10 s; true when all exited with 0. */
async function stopAll(children: Child[]): Promise<boolean> {
  let clean = true;
  await Promise.all(
    children.map(async (c) => {
      const p = c.process;
      if (p.exitCode !== null || p.signalCode !== null) {
        clean &&= p.exitCode === 0;
        return;
      }
      p.kill("SIGTERM");
      const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
      const [code] = (await once(p, "exit")) as [number | null];
      clearTimeout(timer);
      clean &&= code === 0;
    }),
  );
  return clean;
}
