import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmdirSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ExecutionContext } from "ava";
import { isRoot } from "../harness/users.js";

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
