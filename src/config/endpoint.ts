import net from "node:net";

/** A ZeroMQ endpoint taken apart: tcp host and port (`*` for any), or an ipc path. */
export type Endpoint =
  | { transport: "tcp"; host: string; port: number | "*" }
  | { transport: "ipc"; path: string };

const TCP = /^tcp:\/\/(\*|\[[^\]]*\]|[A-Za-z0-9.-]+):(\*|\d{1,5})$/;
const IPC = /^ipc:\/\/(\S+)$/;

/** `*`, `0.0.0.0` and `::` listen on every interface; as a connect address they reach nothing meant. */
export const isWildcardHost = (host: string) => host === "*" || host === "0.0.0.0" || host === "::";

/**
 * Parses an endpoint as written in the config; the reason is a phrase that follows "expected".
 * A connect address needs a host and a port: a bind wildcard there (`tcp://*:5678`,
 * `tcp://0.0.0.0:5678`, a `*` port) is a bind address pasted into the wrong place, and libzmq
 * would retry it quietly for ever.
 */
export function parseEndpoint(
  text: string,
  role: "bind" | "connect",
): { ok: true; endpoint: Endpoint } | { ok: false; reason: string } {
  const ipc = IPC.exec(text);
  if (ipc) return { ok: true, endpoint: { transport: "ipc", path: ipc[1]! } };
  const tcp = TCP.exec(text);
  if (!tcp) return { ok: false, reason: "an endpoint such as tcp://192.0.2.1:5678 or ipc:///run/f2bz/feed" };
  const [, written, digits] = tcp as unknown as [string, string, string];
  const bracketed = written.startsWith("[");
  const host = bracketed ? written.slice(1, -1) : written;
  if (bracketed && !net.isIPv6(host)) return { ok: false, reason: "an IPv6 address inside the brackets" };
  if (!bracketed && /^[\d.]+$/.test(host) && !net.isIPv4(host))
    return { ok: false, reason: "an IPv4 address" };
  const port = digits === "*" ? "*" : Number(digits);
  if (port !== "*" && (port < 1 || port > 65_535)) return { ok: false, reason: "a port from 1 to 65535" };
  if (role === "connect" && (isWildcardHost(host) || port === "*")) {
    return {
      ok: false,
      reason: "an address and port to connect to, not a bind wildcard ('*', 0.0.0.0 or [::])",
    };
  }
  return { ok: true, endpoint: { transport: "tcp", host, port } };
}
