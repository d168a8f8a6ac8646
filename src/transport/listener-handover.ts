import { spawn } from "node:child_process";
import { readdir, readFile, readlink } from "node:fs/promises";
import { F2bzError, quote } from "../errors.js";

/**
 * A second file descriptor, in this process, for the listening TCP socket that a bound ZeroMQ
 * socket owns: a replacement socket adopts it (ZMQ_USE_FD) before the old one closes, so dropping
 * every connection of an endpoint never releases its port.
 *
 * Threat (issue 10, finding 7): re-binding by close + bind left the port free for a moment; a
 * local unprivileged process that bound it then owned the endpoint for good. libzmq cannot end the
 * sessions of a socket but keep its listener, and zeromq.js exposes neither the peer's fd nor its
 * ZAP user id per message, so revoked peers can only be dropped by replacing the socket.
 *
 * How, without native code: the listener's fd is found by its inode (/proc/self/fd against the
 * LISTEN rows of /proc/self/net/tcp{,6}), inherited by a short-lived `node` child, and sent back over
 * the IPC channel as a raw TCP handle: SCM_RIGHTS makes a new fd here for the same socket. Linux
 * only; on failure the caller falls back to close + bind.
 */

/** ZMQ_USE_FD: bind adopts this listening fd instead of creating a socket. Not typed by zeromq.js. */
const ZMQ_USE_FD = 89;
const CHILD_TIMEOUT_MS = 5_000;
/** In the child: wrap fd 4 as a TCP handle without listening on it and send it to the parent. */
const CHILD = [
  'const { TCP, constants } = process.binding("tcp_wrap");',
  "const handle = new TCP(constants.SERVER);",
  "if (handle.open(4) !== 0) process.exit(3);",
  'process.send("listener", handle, () => process.exit(0));',
].join("\n");

/**
 * The handles received: each holds the fd that a ZeroMQ socket now owns and closes. Kept for the
 * life of the process and never closed, so that Node never closes an fd out from under libzmq
 * (or, once libzmq closed it, a later fd that reuses the number).
 */
const retained: unknown[] = [];

/** Port of `tcp://host:port`; undefined for other transports and unresolved `*` ports. */
export function tcpPort(address: string): number | undefined {
  const match = /^tcp:\/\/.+:(\d{1,5})$/.exec(address);
  const port = match ? Number(match[1]) : Number.NaN;
  return port > 0 && port < 65_536 ? port : undefined;
}

/** Inodes of the sockets listening on `port`, from the text of /proc/net/tcp or tcp6. */
export function listeningInodes(table: string, port: number): string[] {
  const inodes: string[] = [];
  for (const line of table.split("\n").slice(1)) {
    const columns = line.trim().split(/\s+/);
    // sl local_address rem_address st … inode; st 0A is TCP_LISTEN.
    const local = columns[1]?.split(":")[1];
    if (columns[3] === "0A" && local !== undefined && Number.parseInt(local, 16) === port) {
      if (columns[9] !== undefined) inodes.push(columns[9]);
    }
  }
  return inodes;
}

/** This process's fd of the one socket listening on `port`. */
async function findListenerFd(address: string, port: number): Promise<number> {
  const inodes = new Set<string>();
  // /proc/self/net, not /proc/net: systemd's ProcSubset=pid (our unit) hides the latter.
  for (const table of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
    const text = await readFile(table, "utf8").catch(() => "");
    for (const inode of listeningInodes(text, port)) inodes.add(inode);
  }
  const ours = new Map<string, number>();
  for (const name of await readdir("/proc/self/fd")) {
    const target = await readlink(`/proc/self/fd/${name}`).catch(() => "");
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined && inodes.has(inode) && !ours.has(inode)) ours.set(inode, Number(name));
  }
  const [fd, ...others] = ours.values();
  if (fd === undefined || others.length > 0) {
    throw new F2bzError(
      "BIND_FAILED",
      `cannot find the listener of ${quote(address)}: ${ours.size} sockets of this process listen on port ${port}, expected 1`,
    );
  }
  return fd;
}

interface Handle {
  fd: number;
  close(): void;
}

/** A new fd in this process for the socket behind `fd`, passed through a child process. */
function duplicate(fd: number): Promise<Handle> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", CHILD], {
      // No NODE_OPTIONS: a loader or --require of the parent has no business in this child.
      env: {},
      stdio: ["ignore", "ignore", "ignore", "ipc", fd],
      timeout: CHILD_TIMEOUT_MS,
    });
    child.once("message", (_message, handle) => {
      const received = handle as Partial<Handle> | undefined;
      if (typeof received?.fd === "number" && received.fd >= 0) resolve(received as Handle);
    });
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      reject(new F2bzError("BIND_FAILED", `listener hand-over child ended with ${quote(signal ?? code)}`)),
    );
  });
}

/**
 * Binds `fresh` to the listening socket that already serves `address` in this process. After it
 * returns, closing the old ZeroMQ socket ends its connections but not the listener. On failure
 * `fresh` must not be bound again (it carries ZMQ_USE_FD): create another.
 */
export async function adoptListener(
  fresh: { bindSync(address: string): void },
  address: string,
): Promise<void> {
  const port = tcpPort(address);
  if (port === undefined) {
    throw new F2bzError(
      "BIND_FAILED",
      `cannot hand over ${quote(address)}, expected a tcp address with a port`,
    );
  }
  const handle = await duplicate(await findListenerFd(address, port));
  try {
    (fresh as unknown as { setInt32Option(option: number, value: number): void }).setInt32Option(
      ZMQ_USE_FD,
      handle.fd,
    );
    fresh.bindSync(address);
  } catch (error) {
    // Not adopted: our copy would otherwise hold the port for ever.
    handle.close();
    throw error;
  }
  retained.push(handle);
}
