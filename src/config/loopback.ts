import net from "node:net";

export interface ListenAddress {
  host: string;
  port: number;
}

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/**
 * `127.0.0.1:9464` or `[::1]:9464`: a literal loopback address (127.0.0.0/8 or ::1) and a port
 * 0-65535, else undefined; port 0 takes any free port, which the daemon logs (as `tcp://…:*` does
 * for the publisher's endpoints). Names are refused: `localhost` can resolve to anything /etc/hosts
 * says, and what listens here answers without authentication.
 */
export function parseLoopbackListen(text: string): ListenAddress | undefined {
  const match = /^(?:\[([0-9A-Fa-f:]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const [, v6, v4, digits] = match;
  const port = Number(digits);
  if (port > 65_535) return undefined;
  if (v4 !== undefined) return net.isIPv4(v4) && LOOPBACK.check(v4, "ipv4") ? { host: v4, port } : undefined;
  return v6 !== undefined && net.isIPv6(v6) && LOOPBACK.check(v6, "ipv6") ? { host: v6, port } : undefined;
}

/** `127.0.0.1:9464`, `[::1]:9464`: as an operator writes it, for logs and messages. */
export function formatListen(address: ListenAddress): string {
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
