import type * as zmq from "zeromq";
import { fingerprint } from "../keys/identity.js";

/** Broken handshakes (or failed connects) in a row before the watcher says what is wrong. */
export const FAILURES_BEFORE_WARNING = 3;

/**
 * What a client's socket events say about its CURVE handshakes with a publisher, which the silence
 * of a socket that never connects cannot: our key refused by the publisher's ZAP handler, or the
 * publisher's key not the one pinned (libzmq reports that only as a broken pipe, retried every
 * second forever). `problem` is a message for the operator, naming where `role` configures it.
 */
export type HandshakeNews =
  | { type: "connected" }
  | { type: "disconnected" }
  | { type: "refused"; problem: string; fields: { status: number } }
  | { type: "mismatch"; problem: string; fields: { pinned: string; err: string }; failures: number }
  | { type: "protocol"; problem: string; fields: { code: string } }
  | { type: "unreachable"; problem: string; fields: Record<string, never> };

export interface HandshakeWatchOptions {
  /** The role our key has at the publisher: monitors submit, subscribers receive. */
  role: "monitor" | "subscriber";
  /** The publisher's key this node pinned. */
  serverKey: Uint8Array;
  /** Told of each piece of news, in order; must not throw. */
  onNews: (news: HandshakeNews) => void;
}

/**
 * Watches each socket a client opens to one publisher in turn; the count of broken handshakes in a
 * row survives the sockets (a lazy-pirate client replaces its socket on every timeout).
 */
export class HandshakeWatch {
  private readonly pinned: string;
  private broken = 0;
  private retries = 0;
  /** Sockets watched now whose handshake succeeded and that have not disconnected since. */
  private readonly up = new Set<object>();

  constructor(private readonly o: HandshakeWatchOptions) {
    this.pinned = fingerprint(o.serverKey);
  }

  /** Broken or refused handshakes since the last one that succeeded. */
  get failures(): number {
    return this.broken;
  }

  /**
   * Whether a socket of this publisher has a completed handshake now (the gauge of connected
   * publishers). A socket replaced by the lazy-pirate client counts until its own loop ends, which
   * may come after its replacement's handshake: so per socket, not one flag.
   */
  get connected(): boolean {
    return this.up.size > 0;
  }

  /** Reads `socket.events` until the socket closes; never throws. */
  async watch(socket: { events: AsyncIterable<zmq.Event> }): Promise<void> {
    try {
      for await (const event of socket.events) {
        if (event.type === "handshake") this.up.add(socket);
        else if (event.type === "disconnect") this.up.delete(socket);
        const news = this.interpret(event);
        if (news) this.o.onNews(news);
      }
    } catch {
      // The socket closed under the loop: nothing to watch any more.
    } finally {
      this.up.delete(socket);
    }
  }

  private interpret(event: zmq.Event): HandshakeNews | undefined {
    const role = this.o.role;
    switch (event.type) {
      case "handshake":
        this.broken = 0;
        this.retries = 0;
        return { type: "connected" };
      case "disconnect":
        return { type: "disconnected" };
      case "handshake:error:auth":
        this.broken++;
        return {
          type: "refused",
          problem: `publisher refused our key: add this node's public .key to the publisher's keys/authorized/${role}s`,
          fields: { status: event.error.status },
        };
      case "handshake:error:protocol":
        return {
          type: "protocol",
          problem: "handshake with the publisher failed: protocol error",
          fields: { code: event.error.code },
        };
      case "handshake:error:other":
        // With CURVE, a client that pinned the wrong server key cannot produce a HELLO the server
        // can open; the server drops the connection and the client sees its pipe break.
        if (++this.broken < FAILURES_BEFORE_WARNING) return undefined;
        return {
          type: "mismatch",
          problem: `publisher key does not match: check ${role}.publishers[].key`,
          fields: { pinned: this.pinned, err: event.error.message },
          failures: this.broken,
        };
      case "connect:retry":
        if (this.broken > 0 || ++this.retries < FAILURES_BEFORE_WARNING) return undefined;
        return {
          type: "unreachable",
          problem: "cannot connect to the publisher: retrying with back-off",
          fields: {},
        };
      default:
        return undefined;
    }
  }
}
