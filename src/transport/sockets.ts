import * as zmq from "zeromq";
import { F2bzError, quote } from "../errors.js";
import type { Role } from "../keys/store.js";
import { z85Encode } from "../keys/z85.js";

/**
 * The socket factory: every ZeroMQ socket of f2bz is made here, with every security option set in
 * the constructor. libzmq ignores options set after bind/connect for that endpoint (zeromq.js only
 * warns), so a socket that is configured later can silently run without CURVE or without ZAP.
 *
 * Threat: libzmq fails open. A CURVE server that finds no ZAP handler accepts any client key unless
 * it has a non-empty `zapDomain` and `zapEnforceDomain`. Both are always set here, so a missing,
 * crashed or foreign-context handler means "nobody gets in", never "everybody gets in".
 *
 * The ZAP handler is looked up in the server socket's own context: create one context per process
 * with `createTransportContext()` and pass it to `ZapHandler.start` and to every server socket.
 */

/** One ZAP domain per role, so that a subscriber key can never submit events. */
export type ZapDomain = "submit" | "feed";
export const ZAP_DOMAINS: readonly ZapDomain[] = ["submit", "feed"];
/** Whose keys each domain admits: authorized/monitors may submit, authorized/subscribers receive. */
export const ROLE_OF_DOMAIN: Readonly<Record<ZapDomain, Role>> = { submit: "monitor", feed: "subscriber" };

export function isZapDomain(value: unknown): value is ZapDomain {
  return value === "submit" || value === "feed";
}

/** The CURVE half of an identity; a `SecretIdentity` from src/keys fits. */
export interface CurveKeyPair {
  curvePublic: Uint8Array;
  curveSecret: Uint8Array;
}

export const DEFAULT_MAX_MESSAGE_SIZE = 65_536;
/** Bounds a handshake, including a hung ZAP handler; slow scanners are cut after this. */
export const HANDSHAKE_INTERVAL_MS = 5_000;
export const HEARTBEAT_INTERVAL_MS = 10_000;
export const HEARTBEAT_TIMEOUT_MS = 30_000;
export const RECONNECT_INTERVAL_MS = 1_000;
export const RECONNECT_MAX_INTERVAL_MS = 30_000;
export const DEFAULT_SEND_HIGH_WATER_MARK = 1_000;

const KEY_BYTES = 32;

/** Refuses to start without CURVE: zeromq built without libsodium would fail with a bare EINVAL. */
export function assertCurve(capability: Partial<Record<string, boolean>> = zmq.capability): void {
  if (!capability.curve) {
    throw new F2bzError(
      "CURVE_UNAVAILABLE",
      "zeromq was built without curve support, expected a build with curve (libsodium)",
    );
  }
}

/** One context per process: the ZAP handler and the server sockets must share it. */
export function createTransportContext(): zmq.Context {
  // Not blocky: every socket has linger 0 anyway, and a stuck peer must never hold up exit.
  return new zmq.Context({ blocky: false });
}

function z85Key(key: Uint8Array, what: string): string {
  if (key.length !== KEY_BYTES) {
    throw new F2bzError("KEY_INVALID", `${what} is ${key.length} bytes, expected ${KEY_BYTES}`);
  }
  return z85Encode(key);
}

function checkSize(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new F2bzError("INTERNAL", `${what} ${quote(value)} is invalid, expected a positive integer`);
  }
  return value;
}

/** Options common to both sides: bounded frames, bounded handshakes, dead peers detected. */
function commonOptions(maxMessageSize: number) {
  return {
    maxMessageSize: checkSize(maxMessageSize, "maxMessageSize"),
    handshakeInterval: HANDSHAKE_INTERVAL_MS,
    heartbeatInterval: HEARTBEAT_INTERVAL_MS,
    heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
    heartbeatTimeToLive: HEARTBEAT_TIMEOUT_MS,
    // Threat: with linger, closing a socket keeps flushing queued messages, also to a peer whose
    // key was just revoked. Queued data is dropped; sequence numbers and resends repair the gap.
    linger: 0,
  };
}

export interface ServerSocketOptions {
  /** The process's transport context, the one the ZAP handler is bound in. */
  context: zmq.Context;
  identity: CurveKeyPair;
  domain: ZapDomain;
  /** Per frame, checked by libzmq before anything is decrypted into our heap. Default 65536. */
  maxMessageSize?: number;
  /** Publisher only: messages queued per subscriber before PUB drops (gaps show in sequence numbers). */
  sendHighWaterMark?: number;
  /**
   * Needed to bind an IPv6 address; `needsIpv6(address)` says when. Off by default because an
   * IPv6 socket bound to an IPv4 address reports its peers as `::ffff:a.b.c.d`.
   */
  ipv6?: boolean;
}

/** Whether binding `address` takes the `ipv6` option: a bracketed IPv6 host, or `*` for dual stack. */
export function needsIpv6(address: string): boolean {
  return /^tcp:\/\/(\[|\*:)/.test(address);
}

export interface ServerSockets {
  reply: zmq.Reply;
  router: zmq.Router;
  publisher: zmq.Publisher;
  /** The feed: a PUB that hands subscriptions to `gateSubscriptions` instead of applying them. */
  xpublisher: zmq.XPublisher;
}
export type ServerKind = keyof ServerSockets;

/** A CURVE server socket that only ZAP can let peers into. Bind it (BoundEndpoint) after the handler. */
export function createServerSocket<K extends ServerKind>(
  kind: K,
  options: ServerSocketOptions,
): ServerSockets[K] {
  assertCurve();
  // Threat: an empty domain with enforcement on skips ZAP and admits every key (verified on 4.3.5).
  if (!isZapDomain(options.domain)) {
    throw new F2bzError(
      "INTERNAL",
      `zap domain ${quote(options.domain ?? "")} is invalid, expected 'submit' or 'feed'`,
    );
  }
  const base = {
    context: options.context,
    curveServer: true,
    curveSecretKey: z85Key(options.identity.curveSecret, "curve secret key"),
    curvePublicKey: z85Key(options.identity.curvePublic, "curve public key"),
    zapDomain: options.domain,
    zapEnforceDomain: true,
    ipv6: options.ipv6 ?? false,
    ...commonOptions(options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE),
  };
  switch (kind) {
    case "reply":
      return new zmq.Reply(base) as ServerSockets[K];
    case "router":
      // Unroutable replies (the peer left) are dropped, never an error that stalls the loop.
      return new zmq.Router({ ...base, mandatory: false }) as ServerSockets[K];
    case "publisher":
      return new zmq.Publisher({ ...base, sendHighWaterMark: sendHwm(options) }) as ServerSockets[K];
    case "xpublisher":
      // Threat: a PUB stores every prefix any peer subscribes to, unbounded in count and size.
      // Manual mode stores none until the gate calls subscribe() for the peer that asked.
      return new zmq.XPublisher({
        ...base,
        sendHighWaterMark: sendHwm(options),
        manual: true,
      }) as ServerSockets[K];
    default:
      throw new F2bzError("INTERNAL", `server socket kind ${quote(kind)} is invalid`);
  }
}

function sendHwm(options: ServerSocketOptions): number {
  return checkSize(options.sendHighWaterMark ?? DEFAULT_SEND_HIGH_WATER_MARK, "sendHighWaterMark");
}

export interface ClientSocketOptions {
  /** Defaults to zeromq's global context; clients need no ZAP handler. */
  context?: zmq.Context;
  identity: CurveKeyPair;
  /** The server's CURVE public key, pinned like an ssh known_hosts entry. */
  serverKey: Uint8Array;
  maxMessageSize?: number;
  /** First reconnect delay, doubling up to `reconnectMaxInterval`. Default 1000 ms. */
  reconnectInterval?: number;
  reconnectMaxInterval?: number;
  /** Default true: connect to IPv6 addresses and names; the server still sees IPv4 peers as such. */
  ipv6?: boolean;
}

export interface ClientSockets {
  request: zmq.Request;
  dealer: zmq.Dealer;
  subscriber: zmq.Subscriber;
}
export type ClientKind = keyof ClientSockets;

/**
 * A CURVE client socket. A wrong server key loops on reconnect with back-off and never delivers;
 * after a ZAP denial libzmq ends that connect session for good (no retry), so an owner that wants
 * a pending key to recover once accepted must disconnect and connect again.
 */
export function createClientSocket<K extends ClientKind>(
  kind: K,
  options: ClientSocketOptions,
): ClientSockets[K] {
  assertCurve();
  const base = {
    ...(options.context ? { context: options.context } : {}),
    curveServerKey: z85Key(options.serverKey, "curve server key"),
    curvePublicKey: z85Key(options.identity.curvePublic, "curve public key"),
    curveSecretKey: z85Key(options.identity.curveSecret, "curve secret key"),
    reconnectInterval: checkSize(options.reconnectInterval ?? RECONNECT_INTERVAL_MS, "reconnectInterval"),
    reconnectMaxInterval: checkSize(
      options.reconnectMaxInterval ?? RECONNECT_MAX_INTERVAL_MS,
      "reconnectMaxInterval",
    ),
    ipv6: options.ipv6 ?? true,
    ...commonOptions(options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE),
  };
  switch (kind) {
    case "request":
      return new zmq.Request(base) as ClientSockets[K];
    case "dealer":
      return new zmq.Dealer(base) as ClientSockets[K];
    case "subscriber":
      return new zmq.Subscriber(base) as ClientSockets[K];
    default:
      throw new F2bzError("INTERNAL", `client socket kind ${quote(kind)} is invalid`);
  }
}
