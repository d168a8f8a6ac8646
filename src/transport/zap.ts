import * as zmq from "zeromq";
import { F2bzError } from "../errors.js";
import { z85Encode } from "../keys/z85.js";
import { type Logger, untrusted } from "../logging.js";
import { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { isZapDomain, type ZapDomain } from "./sockets.js";

/**
 * The ZAP handler (ZeroMQ RFC 27): libzmq asks it, during each CURVE handshake on a server socket
 * of the same context, whether the client key may enter that socket's domain.
 *
 * Invariants:
 * - bound at `inproc://zeromq.zap.01` before any server socket binds (until then, enforcing
 *   sockets refuse everybody);
 * - answers every well-formed request with exactly six frames, from memory only: one handler
 *   serialises every handshake of the process, so awaiting disk or network here would let one slow
 *   peer stall all others until `handshakeInterval` expires;
 * - fails closed: 400 for anything it does not positively recognise, 500 if the registry throws.
 *
 * ZAP runs only at handshake: revoking a key takes a reload *and* a rebind (see BoundEndpoint).
 *
 * Wiring in a daemon, in this order, closed in reverse (endpoints, handler, access):
 *   const context = createTransportContext();
 *   const access = await AccessControl.open(keysDir, { logger, onRemoved: (d) => rebindAll(d) });
 *   const zap = await ZapHandler.start({ context, registry: access, onUnknown: access.recordUnknown, logger });
 *   const feed = await BoundEndpoint.open(
 *     () => createServerSocket("publisher", { context, identity, domain: "feed" }), address);
 */
export const ZAP_ENDPOINT = "inproc://zeromq.zap.01";

export interface ZapPeer {
  /** Returned to libzmq as the ZAP user id. */
  nodeId: string;
  name: string;
}

export interface ZapRegistry {
  /** The authorized, not revoked peer of this key in this domain; called for every handshake. */
  lookup(domain: ZapDomain, curvePublic: Uint8Array): ZapPeer | undefined;
  /** Revoked keys are denied without being reported as unknown. */
  isRevoked?(curvePublic: Uint8Array): boolean;
}

export type ZapReason = "mechanism" | "domain" | "malformed" | "revoked" | "unknown" | "error";

export interface ZapDenial {
  status: "400" | "500";
  reason: ZapReason;
  /** Peer IP as libzmq reports it: untrusted text, escape before logging. */
  address: string;
  mechanism: string;
  domain?: ZapDomain;
  curvePublic?: Uint8Array;
  error?: unknown;
}

export type ZapDecision =
  | { status: "200"; domain: ZapDomain; address: string; curvePublic: Uint8Array; peer: ZapPeer }
  | ZapDenial;

const VERSION = "1.0";
const CURVE_KEY_BYTES = 32;
const TEXT: Record<ZapDecision["status"], string> = { "200": "OK", "400": "denied", "500": "internal error" };

/**
 * Decides one request. Frames as a REP would see them: version, request id, domain, address,
 * identity, mechanism, credentials. The address and credentials come from the network.
 */
export function decide(request: readonly Buffer[], registry: ZapRegistry): ZapDecision {
  const [version, , domainFrame, addressFrame, , mechanismFrame, ...credentials] = request;
  const address = peerAddress(addressFrame?.toString("latin1") ?? "");
  const mechanism = mechanismFrame?.toString("latin1") ?? "";
  const denied = (reason: ZapReason, extra: Pick<ZapDenial, "domain" | "curvePublic"> = {}): ZapDenial => ({
    status: "400",
    reason,
    address,
    mechanism,
    ...extra,
  });

  if (request.length < 6 || version?.toString("latin1") !== VERSION) return denied("malformed");
  // NULL and PLAIN are refused even though our sockets never offer them: defence in depth, should
  // a socket ever be created outside the factory.
  if (mechanism !== "CURVE") return denied("mechanism");
  const domain = domainFrame?.toString("latin1");
  if (!isZapDomain(domain)) return denied("domain");
  const key = credentials[0];
  if (credentials.length !== 1 || key === undefined || key.length !== CURVE_KEY_BYTES) {
    return denied("malformed", { domain });
  }
  // Copied: the caller may keep the key after this message's buffers are gone.
  const curvePublic = Uint8Array.from(key);
  try {
    if (registry.isRevoked?.(curvePublic)) return denied("revoked", { domain, curvePublic });
    const peer = registry.lookup(domain, curvePublic);
    if (!peer) return denied("unknown", { domain, curvePublic });
    return { status: "200", domain, address, curvePublic, peer };
  } catch (error) {
    return { status: "500", reason: "error", address, mechanism, domain, curvePublic, error };
  }
}

/** A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`; logs and pending/ show `a.b.c.d`. */
export function peerAddress(raw: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(raw);
  return mapped ? mapped[1]! : raw;
}

/** The six reply frames of RFC 27: version, request id, status, text, user id, metadata. */
export function replyFrames(requestId: Buffer | undefined, decision: ZapDecision): (Buffer | string)[] {
  const userId = decision.status === "200" ? decision.peer.nodeId : "";
  return [VERSION, requestId ?? "", decision.status, TEXT[decision.status], userId, ""];
}

export interface ZapHandlerOptions {
  /** The transport context; server sockets of other contexts never consult this handler. */
  context: zmq.Context;
  registry: ZapRegistry;
  logger: Logger;
  metrics?: Metrics;
  /** An unknown CURVE key asked to enter a known domain (for keys/pending). Must not block. */
  onUnknown?: (domain: ZapDomain, address: string, curvePublic: Uint8Array) => void;
  /** Denial log lines per peer address; default 5 per 10 s. */
  denialLog?: RateLimitedLog;
}

export class ZapHandler {
  readonly metrics: Metrics;
  readonly context: zmq.Context;
  private readonly log: Logger;
  private readonly denialLog: LimitedLog;
  private readonly loop: Promise<void>;

  private constructor(
    private readonly socket: zmq.Router,
    private readonly options: ZapHandlerOptions,
  ) {
    this.context = options.context;
    this.metrics = options.metrics ?? new Metrics("publisher");
    this.log = options.logger.child({ component: "zap" });
    this.denialLog = new LimitedLog(this.log, options.denialLog ?? new RateLimitedLog());
    this.loop = this.run();
  }

  /** Binds the handler; call before binding any server socket of `options.context`. */
  static async start(options: ZapHandlerOptions): Promise<ZapHandler> {
    // A Router, not a Reply: no send/receive lockstep that one odd request could wedge.
    const socket = new zmq.Router({ context: options.context, linger: 0 });
    try {
      await socket.bind(ZAP_ENDPOINT);
    } catch (error) {
      socket.close();
      throw new F2bzError(
        "BIND_FAILED",
        `cannot bind the zap handler at '${ZAP_ENDPOINT}': ${(error as Error).message}, expected one handler per context`,
        { cause: error },
      );
    }
    return new ZapHandler(socket, options);
  }

  get closed(): boolean {
    return this.socket.closed;
  }

  /** Stops answering: from then on, enforcing server sockets of this context refuse every peer. */
  async close(): Promise<void> {
    this.socket.close();
    await this.loop;
  }

  private async run(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        const [routingId, delimiter, ...request] = frames;
        this.metrics.inc("zap_requests_total");
        // libzmq's ZAP client sends a REQ-style envelope; anything else did not come from libzmq.
        if (routingId === undefined || delimiter === undefined || delimiter.length !== 0) {
          this.metrics.inc("zap_denied_total", { reason: "envelope" });
          continue;
        }
        const decision = decide(request, this.options.registry);
        // Side effects before the reply, all synchronous: nothing here awaits I/O.
        this.account(decision);
        try {
          await this.socket.send([routingId, delimiter, ...replyFrames(request[1], decision)]);
        } catch (error) {
          if (this.socket.closed) break;
          // The server session went away mid-handshake; libzmq then fails that handshake closed.
          this.metrics.inc("zap_reply_failures_total");
          this.log.warn({ err: error }, "zap reply not sent");
        }
      }
    } catch (error) {
      // Only a bug lands here. Enforced domains keep every socket closed, so nothing is let in.
      this.log.error({ err: error }, "zap handler stopped, every handshake is now refused");
    }
  }

  private account(decision: ZapDecision): void {
    if (decision.status === "200") {
      this.metrics.inc("zap_allowed_total");
      this.log.debug(
        { domain: decision.domain, address: untrusted(decision.address, 64), node: decision.peer.nodeId },
        "peer authenticated",
      );
      return;
    }
    this.metrics.inc("zap_denied_total", { reason: decision.reason });
    const fields = () => ({
      domain: decision.domain ?? null,
      address: untrusted(decision.address, 64),
      mechanism: untrusted(decision.mechanism, 16),
      key: decision.curvePublic ? z85Encode(decision.curvePublic) : null,
      reason: decision.reason,
      status: Number(decision.status),
    });
    if (decision.status === "500") {
      this.denialLog.error(
        decision.address,
        () => ({ ...fields(), err: decision.error }),
        "zap lookup failed",
      );
    } else {
      this.denialLog.warn(decision.address, fields, "peer refused");
    }
    if (decision.reason === "unknown" && decision.domain && decision.curvePublic) {
      try {
        this.options.onUnknown?.(decision.domain, decision.address, decision.curvePublic);
      } catch (error) {
        this.log.error({ err: error }, "recording an unknown key failed");
      }
    }
  }
}
