/**
 * An unprivileged system user for tests that must prove something works (or is refused) without
 * root. Created with useradd when the tests run as root, removed again by the returned `remove`.
 * Each test file passes its own name, so files running in parallel never share (or delete) a user.
 */
import { execFile, spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  /** userdel, which also removes the user's own group. Idempotent. */
  remove(): Promise<void>;
}

export const isRoot = (): boolean => process.getuid?.() === 0;

export async function createTestUser(name: string): Promise<TestUser> {
  if (!isRoot()) throw new Error("creating a test user needs root");
  if (!/^f2bz-[a-z0-9-]{1,20}$/.test(name)) throw new Error(`test user name '${name}' is not allowed`);
  // A user of this name left behind by an interrupted run is reused, and removed at the end.
  if (!(await lookup(name))) {
    await run("/usr/sbin/useradd", [
      "--system",
      "--user-group",
      "--no-create-home",
      "--home-dir",
      "/nonexistent",
      "--shell",
      "/usr/sbin/nologin",
      name,
    ]);
  }
  const ids = await lookup(name);
  if (!ids) throw new Error(`useradd ${name} did not create the user`);
  await letOthersTraverse(REPOSITORY);
  if (ids.uid === 0) throw new Error(`test user ${name} has uid 0`);
  let removed = false;
  return {
    name,
    ...ids,
    async remove() {
      if (removed) return;
      removed = true;
      await run("/usr/sbin/userdel", [name]);
    },
  };
}

const REPOSITORY = path.resolve(new URL("../../", import.meta.url).pathname);

/**
 * The user runs this checkout's code (node_modules, tsx): every directory above it must let others
 * pass through. A checkout in a `mktemp -d` directory (0700) does not, so the search bit (o+x, never
 * read or write) is added where it lacks. It is left in place: test files run in parallel processes
 * that share these directories, and one taking it away would break another mid-run.
 */
async function letOthersTraverse(dir: string): Promise<void> {
  for (let d = dir; ; d = path.dirname(d)) {
    const { mode } = await fs.stat(d);
    if ((mode & 0o001) === 0) await fs.chmod(d, (mode & 0o7777) | 0o001);
    if (d === path.dirname(d)) return;
  }
}

async function lookup(name: string): Promise<{ uid: number; gid: number } | undefined> {
  const text = await fs.readFile("/etc/passwd", "utf8");
  for (const line of text.split("\n")) {
    const [user, , uid, gid] = line.split(":");
    if (user === name) return { uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a TypeScript file with this Node (through tsx) as `user`: uid and primary gid set by spawn,
 * supplementary groups dropped, a minimal environment, killed at the deadline. Its TMPDIR (tsx's
 * cache, a lab dir) is a fresh dir owned by the user and removed afterwards, so no file of a
 * removed user is left behind.
 */
export async function runNodeAs(
  user: { uid: number; gid: number },
  file: string,
  args: readonly string[],
  options: { cwd: string; timeoutMs: number },
): Promise<RunResult> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "f2bz-as-"));
  await fs.chown(tmp, user.uid, user.gid);
  try {
    return await new Promise((resolve) => {
      const child = spawn(process.execPath, ["--import", "tsx", file, ...args], {
        cwd: options.cwd,
        uid: user.uid,
        gid: user.gid,
        env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/nonexistent", LANG: "C", TMPDIR: tmp },
        stdio: ["ignore", "pipe", "pipe"],
        timeout: options.timeoutMs,
        killSignal: "SIGKILL",
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** uid and gid of an existing account, from /etc/passwd. */
export async function lookupUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
  return lookup(name);
}
