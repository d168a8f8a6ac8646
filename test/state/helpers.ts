import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, mkdtempSync, openSync, rmdirSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ExecutionContext } from "ava";
import { isRoot } from "../harness/users.js";
import { waitFor } from "../harness/wait.js";
import { CLI, ensureBuilt } from "../helpers/cli.js";

/**
 * Whether this test run may mount a tmpfs of its own (root, and a container that allows mount):
 * tried once, synchronously, because ava takes tests only as declared when the file is loaded.
 */
export function canMountTmpfs(): boolean {
  if (!isRoot()) return false;
  const dir = mkdtempSync(path.join(tmpdir(), "f2bz-mount-probe-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" });
    execFileSync("umount", [dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  } finally {
    rmdirSync(dir);
  }
}

/** A tmpfs of `sizeKb` on `dir`, unmounted when the test ends (before its temp dir is removed). */
export function mountTmpfs(t: ExecutionContext, dir: string, sizeKb: number, readOnly = false): void {
  const options = `size=${sizeKb}k,mode=0700${readOnly ? ",ro" : ""}`;
  execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]);
  t.teardown(() => {
    execFileSync("umount", ["--lazy", dir]);
  });
}

export function remountReadOnly(dir: string): void {
  execFileSync("mount", ["-o", "remount,ro", dir]);
}

/**
 * Fills the file system of `file` to the last byte: large writes, then single bytes, until ENOSPC.
 * Returns the bytes written.
 */
export function fillFileSystem(file: string): number {
  const fd = openSync(file, "wx", 0o600);
  let total = 0;
  try {
    for (const size of [1 << 16, 1 << 12, 1]) {
      const chunk = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          total += writeSync(fd, chunk);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw error;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return total;
}

export interface Daemon {
  /** Parsed JSON log lines (stdout) so far. */
  lines(): Record<string, unknown>[];
  stderr(): string;
  line(match: (line: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
  running(): boolean;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** `f2bz <args>` as the built CLI, as systemd runs it: foreground, JSON on stdout. */
export function startDaemon(t: ExecutionContext, args: readonly string[], deadlineMs: number): Daemon {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const lines = () =>
    stdout
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    lines,
    stderr: () => stderr,
    line: (match, what) => {
      return waitFor(
        () => {
          const found = lines().find(match);
          if (found === undefined && child.exitCode !== null) {
            throw new Error(`exited ${child.exitCode}: ${stderr}`);
          }
          return found;
        },
        { timeoutMs: deadlineMs, what },
      );
    },
    running: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const [code] = await exited;
      return code;
    },
  };
}
