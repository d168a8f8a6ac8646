import { type ChildProcess, spawn } from "node:child_process";
import { appendFile, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { benchAddress, scratch } from "./lib/cluster.js";

/**
 * `npm run soak -- [--minutes N]`: a publisher, a monitor and a subscriber from the built CLI under
 * mixed load (bans, unbans, expiries, subscriber restarts) for N minutes (default 10). Samples the
 * resident memory and open descriptors of every daemon from /proc; after a warm-up (the first fifth)
 * both must stay flat: under `maxGrowth` (10 %) above their warm-up level. Exits 1 otherwise.
 */

const CLI = fileURLToPath(new URL("../bin/f2bz.js", import.meta.url));

export interface SoakOptions {
  seconds: number;
  /** Allowed growth after warm-up, relative (0.1 = 10 %), for RSS; descriptors get `maxFdGrowth` more. */
  maxRssGrowth: number;
  maxFdGrowth: number;
  /** The share of the run (0.2 by default) before the levels that later samples are held to. */
  warmUp?: number;
  onSample?: (line: string) => void;
}

export interface SoakVerdict {
  ok: boolean;
  lines: string[];
}

interface Sample {
  rss: number;
  fds: number;
}

export async function soak(o: SoakOptions): Promise<SoakVerdict> {
  const dir = await scratch("soak");
  const daemons: ChildProcess[] = [];
  try {
    await dir.identity("pub1");
    await dir.identity("web1", "monitor");
    await dir.identity("web2", "subscriber");
    const keys = path.join(dir.dir, "keys");
    const node = (name: string) => ({
      name,
      identity: path.join(keys, `${name}.key_secret`),
      stateDir: path.join(dir.dir, `state-${name}`),
    });
    const config = async (name: string, sections: Record<string, unknown>) => {
      const file = path.join(dir.dir, `${name}.yaml`);
      await writeFile(file, stringify({ node: node(name), logging: { level: "warn" }, ...sections }));
      return file;
    };
    const pubConfig = await config("pub1", {
      publisher: {
        submit: "tcp://127.0.0.1:*",
        feed: "tcp://127.0.0.1:*",
        snapshot: "tcp://127.0.0.1:*",
        keys: dir.keysDir,
      },
      logging: { level: "info" },
    });
    const publisher = start(["publisher", "--config", pubConfig]);
    daemons.push(publisher.child);
    const listening = await publisher.line((l) => l.msg === "listening");
    const pubKey = path.join(keys, "pub1.key");
    const log = path.join(dir.dir, "fail2ban.log");
    await writeFile(log, "");
    const monConfig = await config("web1", {
      monitor: {
        log,
        pollInterval: "100ms",
        banTimeFrom: "config",
        banTime: "5s",
        publishers: [{ submit: listening.submit, key: pubKey }],
      },
    });
    const monitor = start(["monitor", "--config", monConfig]);
    daemons.push(monitor.child);
    const subConfig = await config("web2", {
      subscriber: {
        publishers: [{ feed: listening.feed, snapshot: listening.snapshot, key: pubKey }],
        action: { type: "log", jail: "f2bz" },
      },
    });
    let subscriber = start(["subscriber", "--config", subConfig]);
    daemons.push(subscriber.child);

    const started = Date.now();
    const end = started + o.seconds * 1000;
    const warmUp = started + o.seconds * 1000 * (o.warmUp ?? 0.2);
    const levels = new Map<string, { warm?: Sample; last?: Sample; max?: Sample }>();
    let n = 0;
    let nextRestart = started + 10_000;
    // Each subscriber process is held to its own level, taken once it has run a few seconds.
    let generation = 0;
    let generationStart = started;
    while (Date.now() < end) {
      // Mixed load: bans of new addresses (expiring after 5 s at the subscriber), some unbanned.
      const lines: string[] = [];
      for (let i = 0; i < 20; i++, n++) {
        const ip = benchAddress(n % 60_000);
        lines.push(f2bLine(`[sshd] Ban ${ip}`));
        if (n % 3 === 0) lines.push(f2bLine(`[sshd] Unban ${ip}`));
      }
      await appendFile(log, lines.join(""));
      if (Date.now() >= nextRestart) {
        subscriber.child.kill("SIGTERM");
        await subscriber.exited;
        subscriber = start(["subscriber", "--config", subConfig]);
        daemons.push(subscriber.child);
        generation++;
        generationStart = Date.now();
        nextRestart = generationStart + 10_000;
      }
      for (const [name, d] of [
        ["publisher", publisher],
        ["monitor", monitor],
        [`subscriber #${generation + 1}`, subscriber],
      ] as const) {
        const since = name.startsWith("subscriber") ? Math.max(warmUp, generationStart + 4_000) : warmUp;
        const s = await sample(d.child.pid!);
        if (s === undefined) throw new Error(`${name} exited: ${d.stderr()}`);
        const level = levels.get(name) ?? {};
        levels.set(name, level);
        if (Date.now() >= since && level.warm === undefined) level.warm = s;
        if (level.warm !== undefined) level.max = maxOf(level.max, s);
        level.last = s;
      }
      await new Promise((resolve) => setTimeout(resolve, 250)); // load pacing, not a wait for an event
    }
    const out: string[] = [];
    let ok = true;
    for (const [name, level] of levels) {
      const { warm, max } = level;
      if (!warm || !max) continue;
      const rssOk = max.rss <= warm.rss * (1 + o.maxRssGrowth);
      const fdOk = max.fds <= warm.fds + o.maxFdGrowth;
      ok &&= rssOk && fdOk;
      out.push(
        `${name.padEnd(10)} rss ${mib(warm.rss)} → max ${mib(max.rss)} MiB ${rssOk ? "ok" : "GREW"}; fds ${warm.fds} → max ${max.fds} ${fdOk ? "ok" : "GREW"}`,
      );
    }
    out.push(`${n} bans (a third unbanned) in ${o.seconds} s, subscriber restarted every 10 s`);
    return { ok, lines: out };
  } finally {
    for (const child of daemons)
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await Promise.all(
      daemons.map((c) => (c.exitCode === null && c.signalCode === null ? once(c) : undefined)),
    );
    await dir.remove();
  }
}

function start(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" },
  });
  let stderr = "";
  let pending = "";
  const waiters: Array<{
    match: (l: Record<string, string>) => boolean;
    resolve: (l: Record<string, string>) => void;
  }> = [];
  child.stderr!.setEncoding("utf8").on("data", (c: string) => {
    stderr = (stderr + c).slice(-4000);
  });
  child.stdout!.setEncoding("utf8").on("data", (c: string) => {
    const parts = (pending + c).split("\n");
    pending = parts.pop() ?? "";
    for (const part of parts) {
      let line: Record<string, string>;
      try {
        line = JSON.parse(part) as Record<string, string>;
      } catch {
        continue;
      }
      for (const w of waiters.splice(0)) w.match(line) ? w.resolve(line) : waiters.push(w);
    }
  });
  const exited = once(child);
  return {
    child,
    exited,
    stderr: () => stderr,
    line: (match: (l: Record<string, string>) => boolean) =>
      new Promise<Record<string, string>>((resolve, reject) => {
        waiters.push({ match, resolve });
        void exited.then(() => reject(new Error(`${args[0]} exited: ${stderr}`)));
      }),
  };
}

function once(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

async function sample(pid: number): Promise<Sample | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
    if (kib === undefined) return undefined;
    return { rss: Number(kib) * 1024, fds: (await readdir(`/proc/${pid}/fd`)).length };
  } catch {
    return undefined;
  }
}

function maxOf(a: Sample | undefined, b: Sample): Sample {
  return a === undefined ? b : { rss: Math.max(a.rss, b.rss), fds: Math.max(a.fds, b.fds) };
}

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

/** fail2ban 1.0.2's file format. */
function f2bLine(message: string): string {
  const d = new Date();
  const p = (x: number, w = 2) => String(x).padStart(w, "0");
  const stamp = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())},${p(d.getMilliseconds(), 3)}`;
  return `${stamp} ${"fail2ban.actions".padEnd(24)}[4242]: NOTICE  ${message}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { minutes: { type: "string" } } });
  const minutes = Number(values.minutes ?? 10);
  if (!(minutes > 0 && minutes <= 24 * 60))
    throw new Error(`--minutes '${values.minutes}' is invalid, expected 1 to 1440`);
  const verdict = await soak({ seconds: minutes * 60, maxRssGrowth: 0.1, maxFdGrowth: 0 });
  process.stdout.write(`${verdict.lines.join("\n")}\n${verdict.ok ? "flat" : "GREW"}\n`);
  process.exitCode = verdict.ok ? 0 : 1;
}
