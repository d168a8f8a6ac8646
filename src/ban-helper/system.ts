import { promises as fs } from "node:fs";
import { F2bzError, quote } from "../errors.js";

/**
 * The listening socket systemd passed (socket activation, sd_listen_fds(3)): fd 3 when LISTEN_PID is
 * this process and LISTEN_FDS is 1. The socket unit then owns the path, its mode and its group.
 */
export function systemdListenFd(
  env: Readonly<Record<string, string | undefined>>,
  pid: number,
): number | undefined {
  if (env.LISTEN_PID === undefined || env.LISTEN_FDS === undefined) return undefined;
  if (env.LISTEN_PID !== String(pid)) return undefined;
  if (env.LISTEN_FDS !== "1") {
    throw new F2bzError(
      "CONFIG_INVALID",
      `systemd passed ${quote(env.LISTEN_FDS)} sockets, expected exactly 1 (one ListenStream= in the socket unit)`,
    );
  }
  return 3;
}

/** A group name (from /etc/group) or a numeric gid. */
export async function resolveGroup(group: string, file = "/etc/group"): Promise<number> {
  if (/^\d{1,10}$/.test(group)) return Number(group);
  const text = await fs.readFile(file, "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new F2bzError("CONFIG_INVALID", `group ${quote(group)} does not exist in ${quote(file)}`);
}
