import { setTimeout as delay } from "node:timers/promises";
import type * as zmq from "zeromq";
import { F2bzError, quote } from "../errors.js";
import { SerialQueue } from "../toolkit/serial-queue.js";
import { WakeUp } from "../toolkit/wake-up.js";
import { adoptListener, tcpPort } from "./listener-handover.js";

/**
 * A server socket bound at one address that can be re-bound to drop every live connection.
 *
 * Why: ZAP runs only at handshake, so a peer whose key was removed or revoked keeps its session
 * until the connection ends. Re-binding ends all connections of the endpoint; the revoked peer's
 * reconnect is refused by ZAP (and libzmq then stops retrying), the others re-handshake by
 * themselves after their reconnect interval.
 *
 * A rebind replaces the socket instead of calling unbind + bind on it:
 * - zeromq.js 6.8 `unbindSync` calls `zmq_bind` (zeromq/zeromq.js#704), so it cannot unbind;
 * - the async `unbind`/`bind` run `zmq_unbind` on a libuv worker thread, while a pending receive
 *   may call `zmq_msg_recv` on the main thread (libzmq sockets are not thread safe), and any
 *   `send()`/`receive()` started meanwhile throws EBUSY, which would end a `for await` loop.
 *
 * Threat (issue 10, finding 7): closing the old socket before binding the new one leaves the port
 * free for a moment, and a local unprivileged process that binds it then holds the endpoint. So a
 * tcp rebind hands the listening socket over (`adoptListener`): the new socket adopts it while the
 * old one still listens, then the old one closes with its connections; the port is never free and
 * connects in between wait in the backlog. Only if the hand-over fails (no /proc, no child
 * process) does it fall back to close + bind, which waits for libzmq to release the port
 * (EADDRINUSE until then); an ipc bind takes over the path at once (libzmq unlinks a stale socket
 * file before binding). A fallback that loses the port fails with BIND_FAILED and closes the
 * endpoint: the owner must then exit non-zero, so that the service manager restarts it.
 */
export interface BoundEndpointOptions {
  /** How long a fallback rebind waits for libzmq to release the old listening port. Default 5000 ms. */
  rebindTimeoutMs?: number;
  /** Default true. Off, a tcp rebind closes and binds again (the old behaviour, for comparison). */
  handover?: boolean;
  /** Told when a hand-over failed and the rebind falls back to close + bind. */
  onHandoverFailed?: (error: unknown) => void;
}

export class BoundEndpoint<S extends zmq.Socket> {
  private current: S;
  private generationCount = 0;
  private isClosed = false;
  private readonly rebinds = new SerialQueue();
  /** Woken whenever the socket is replaced or the endpoint closes. */
  private readonly changed = new WakeUp();

  private constructor(
    private readonly create: () => S,
    socket: S,
    /** The concrete address, e.g. `tcp://127.0.0.1:41234` for `tcp://127.0.0.1:*`. */
    readonly address: string,
    private readonly options: BoundEndpointOptions,
  ) {
    this.current = socket;
  }

  /** Creates a socket with `create` (which must set every option) and binds it at `address`. */
  static async open<S extends zmq.Socket>(
    create: () => S,
    address: string,
    options: BoundEndpointOptions = {},
  ): Promise<BoundEndpoint<S>> {
    const socket = create();
    try {
      await socket.bind(address);
    } catch (error) {
      socket.close();
      throw bindFailed(address, error);
    }
    const concrete = socket.lastEndpoint ?? address;
    return new BoundEndpoint(create, socket, concrete, options);
  }

  /**
   * The live socket; replaced by `rebind()`. Answer on the socket a request came from: a replaced
   * socket is closed, and zeromq.js throws EBADF synchronously from `send()` on a closed socket.
   */
  get socket(): S {
    return this.current;
  }

  /** How many times the socket was replaced. */
  get generation(): number {
    return this.generationCount;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * The live socket, then each replacement, until `close()`. Run a receive loop per socket:
   * `for await (const socket of ep.sockets()) for await (const msg of socket) …`.
   */
  async *sockets(): AsyncGenerator<S, void, undefined> {
    let seen = -1;
    while (!this.isClosed) {
      if (seen !== this.generationCount) {
        seen = this.generationCount;
        yield this.current;
        continue;
      }
      await this.changed.wait();
    }
  }

  /** Drops every live connection and listens again at the same address. Serialised; a no-op after close. */
  rebind(): Promise<void> {
    return this.rebinds.run(() => this.replace());
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.current.close();
    this.signal();
  }

  private async replace(): Promise<void> {
    if (this.isClosed) return;
    if ((this.options.handover ?? true) && tcpPort(this.address) !== undefined) {
      const fresh = this.create();
      try {
        await adoptListener(fresh, this.address);
      } catch (error) {
        fresh.close();
        this.options.onHandoverFailed?.(error);
        return this.closeThenBind();
      }
      if (this.isClosed) {
        fresh.close();
        return;
      }
      this.swap(fresh);
      return;
    }
    return this.closeThenBind();
  }

  /** Swapped first: zeromq.js throws synchronously (EBADF) on a closed socket, and `socket` must never hand one out. */
  private swap(fresh: S): void {
    const old = this.current;
    this.current = fresh;
    old.close();
    this.generationCount++;
    this.signal();
  }

  private async closeThenBind(): Promise<void> {
    if (this.isClosed) return;
    // Created before the old one closes: if this throws, the endpoint keeps serving as it was.
    const fresh = this.create();
    const old = this.current;
    // Until the bind, the fresh socket has no peers: PUB and ROUTER drop.
    this.current = fresh;
    old.close();
    const deadline = Date.now() + (this.options.rebindTimeoutMs ?? 5_000);
    for (let wait = 1; ; wait = Math.min(wait * 2, 100)) {
      if (this.isClosed) return;
      try {
        // Synchronous on the main thread: the socket is never seen in zeromq.js's blocked state.
        fresh.bindSync(this.address);
        break;
      } catch (error) {
        // libzmq closes the old listener asynchronously (reaper thread): wait for the port.
        if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE" || Date.now() >= deadline) {
          // The endpoint is dead: end the owner's loops rather than leave them on an unbound socket.
          this.close();
          throw bindFailed(this.address, error);
        }
      }
      await delay(wait);
    }
    this.generationCount++;
    this.signal();
  }

  private signal(): void {
    this.changed.wake();
  }
}

function bindFailed(address: string, error: unknown): F2bzError {
  const code = (error as NodeJS.ErrnoException).code ?? String(error);
  return new F2bzError("BIND_FAILED", `cannot bind ${quote(address)}: ${code}`, { cause: error });
}
