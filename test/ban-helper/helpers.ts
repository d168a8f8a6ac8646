import { promises as fs } from "node:fs";
import type { ExecutionContext } from "ava";
import type { BanExecutor } from "../../src/fail2ban/executor.js";
import { tempDir } from "../helpers/temp-dir.js";

export { captureLogger as memoryLogger } from "../helpers/logs.js";
export { openConnection, rawRequest } from "../helpers/unix-socket.js";

/** A temp dir (removed at teardown) that others may traverse: 0755, for unprivileged clients. */
export async function openDir(t: ExecutionContext, prefix: string): Promise<string> {
  const dir = await tempDir(t, `${prefix}-`);
  await fs.chmod(dir, 0o755);
  return dir;
}

/** Wraps an executor and counts the calls that got through to it. */
export function counting(inner: BanExecutor): { executor: BanExecutor; calls: () => number } {
  let calls = 0;
  return {
    executor: {
      ban: (jail, ips) => {
        calls++;
        return inner.ban(jail, ips);
      },
      unban: (jail, ips) => {
        calls++;
        return inner.unban(jail, ips);
      },
    },
    calls: () => calls,
  };
}
