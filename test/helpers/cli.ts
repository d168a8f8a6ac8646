import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

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
