import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ExecutionContext } from "ava";
import { waitFor } from "../harness/wait.js";
import { DEADLINE_MS, type LogLine } from "./logs.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
/** The installed entry point: what an operator runs. */
export const CLI = fileURLToPath(new URL("../../bin/f2bz.js", import.meta.url));

export interface CliOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to the child's stdin, which is then closed. */
  input?: string;
  /** Killed with SIGKILL after this long; the result then has `timedOut: true`. Default 30 s. */
  timeoutMs?: number;
  /** The child's umask (the parent's is restored at once). */
  umask?: number;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

let built = false;

/**
 * `npm test` builds before ava runs, so dist/ normally exists; running one test file alone on a
 * fresh checkout builds it once.
 */
export function ensureBuilt(): void {
  if (built || existsSync(new URL("../../dist/cli.js", import.meta.url))) {
    built = true;
    return;
  }
  execFileSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" });
  built = true;
}

/** Runs `node bin/f2bz.js ...args` and collects its exit code and output. */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  ensureBuilt();
  return new Promise((resolve, reject) => {
    const previous = options.umask === undefined ? undefined : process.umask(options.umask);
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? root,
      env: options.env ?? { ...process.env, NO_COLOR: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    if (previous !== undefined) process.umask(previous);
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs ?? 30_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
    child.stdin.end(options.input ?? "");
  });
}

export interface SpawnOptions {
  /** Default: this process's environment with NO_COLOR=1. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Run as this user (the test runs as root). */
  as?: { uid: number; gid: number };
}

/** A daemon started from the built CLI, as systemd would run it: in the foreground, JSON on stdout. */
export interface Daemon {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Every complete stdout line, parsed; a line that is not JSON as `{ level: 0, msg: line }`. */
  lines: LogLine[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * The first `n` log lines whose msg is `msg`, once they are out; rejects at the deadline, or with
   * the daemon's stderr as soon as it exits without them.
   */
  waitLog(msg: string, n?: number): Promise<LogLine[]>;
  /** Resolves once the "<name> started" line is out. */
  started(name: string): Promise<void>;
  /** Sends SIGTERM (or `signal`) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `node bin/f2bz.js ...args` as a long-running process; killed at teardown if still running. */
export function spawnDaemon(
  t: ExecutionContext,
  args: readonly string[],
  options: SpawnOptions = {},
): Daemon {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? root,
    env: options.env ?? { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
    ...(options.as ? { uid: options.as.uid, gid: options.as.gid } : {}),
  });
  let stdout = "";
  let stderr = "";
  let pending = "";
  const lines: LogLine[] = [];
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
    const parts = (pending + chunk).split("\n");
    pending = parts.pop() ?? "";
    for (const line of parts) {
      try {
        lines.push(JSON.parse(line) as LogLine);
      } catch {
        lines.push({ level: 0, msg: line });
      }
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  // Only this child, by its own pid, and only if the test left it running.
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  });
  const matching = (msg: string, n: number) => {
    const found = lines.filter((l) => l.msg === msg);
    return found.length >= n ? found.slice(0, n) : undefined;
  };
  const waitLog = (msg: string, n = 1) => {
    const what = `${n} × '${msg}' from f2bz ${args[0]}`;
    const found = waitFor(() => matching(msg, n), { timeoutMs: DEADLINE_MS, what });
    found.catch(() => {}); // settled by the race below; the poll may reject later, unobserved
    // "close" comes after the last of stdout: a daemon that exited has logged all it will.
    const died = exited.then(
      (exit) =>
        matching(msg, n) ??
        Promise.reject(new Error(`f2bz ${args[0]} exited ${JSON.stringify(exit)} before ${what}: ${stderr}`)),
    );
    return Promise.race([found, died]);
  };
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    lines,
    exited,
    waitLog,
    started: async (name) => void (await waitLog(`${name} started`)),
    stop: async (signal = "SIGTERM") => {
      child.kill(signal);
      return (await exited).code;
    },
  };
}
