import type * as zmq from "zeromq";
import type { LabelsOf } from "../metrics/catalogue.js";
import type { Metrics } from "../metrics/registry.js";

type Endpoint = LabelsOf<"peers_connected">["endpoint"];

/**
 * `peers_connected{endpoint}`: the connections open on the sockets of one endpoint, from libzmq's
 * accept to its disconnect. Every accepted connection ends in one disconnect, a handshake refused by
 * ZAP included, so the count cannot drift; a socket closed by a rebind takes its connections with it.
 */
export class PeerGauge {
  private open = 0;

  constructor(
    private readonly metrics: Metrics,
    private readonly endpoint: Endpoint,
  ) {}

  /** Counts the connections of `socket` until it closes; never throws. */
  async watch(socket: { events: AsyncIterable<zmq.Event> }): Promise<void> {
    let mine = 0;
    try {
      for await (const event of socket.events) {
        if (event.type === "accept") {
          mine++;
          this.add(1);
        } else if (event.type === "disconnect" && mine > 0) {
          mine--;
          this.add(-1);
        }
      }
    } catch {
      // The socket closed under the loop: its connections are gone.
    } finally {
      this.add(-mine);
    }
  }

  private add(delta: number): void {
    this.open += delta;
    this.metrics.set("peers_connected", { endpoint: this.endpoint }, this.open);
  }
}
