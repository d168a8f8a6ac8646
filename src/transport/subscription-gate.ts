import type * as zmq from "zeromq";
import { untrusted } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import type { LimitedLog } from "../toolkit/limited-log.js";

/**
 * The feed's subscription gate: the only place a subscription takes effect on the feed.
 *
 * Threat (issue 10, finding 4): a PUB stores every prefix any authorized peer subscribes to, in a
 * trie that a disconnect does not shrink; 100 subscriptions of 60 kB took a publisher from 129 to
 * 344 MiB. The feed is an XPUB in manual mode (`createServerSocket("xpublisher")`): libzmq applies
 * nothing by itself and hands each (un)subscription to this loop, which applies only the feed's
 * own topic. So each peer holds at most one entry (libzmq keeps a pipe once per prefix), and
 * libzmq drops it when the peer leaves. The socket's `maxMessageSize` bounds what a peer can make
 * libzmq queue per message; `FEED_INBOUND_MAX_BYTES` is the size to give it. It also bounds the
 * CURVE handshake's INITIATE command (about 300 bytes with metadata): 256 refused every peer.
 *
 * Invariant: `subscribe()` in manual mode applies to the peer whose message was read last, so
 * nothing may await between reading a message and deciding on it.
 */
export const FEED_INBOUND_MAX_BYTES = 1_024;

/** ZMQ_SUBSCRIBE and ZMQ_UNSUBSCRIBE: zeromq.js 6 exposes them on Subscriber only. */
const ZMQ_SUBSCRIBE = 6;
const ZMQ_UNSUBSCRIBE = 7;

export type SubscriptionVerdict = "subscribe" | "unsubscribe" | "malformed" | "topic";

/** Decides one inbound message of an XPUB: `[0x01|0x00, prefix…]` in a single frame. Untrusted. */
export function judgeSubscription(frames: readonly Buffer[], topic: Buffer): SubscriptionVerdict {
  const [frame] = frames;
  if (frames.length !== 1 || frame === undefined || frame.length === 0) return "malformed";
  const kind = frame[0];
  if (kind !== 0 && kind !== 1) return "malformed";
  if (!frame.subarray(1).equals(topic)) return "topic";
  return kind === 1 ? "subscribe" : "unsubscribe";
}

export interface SubscriptionGateOptions {
  /** The one prefix peers may subscribe to. */
  topic: string;
  metrics: Metrics;
  /** Warnings of dropped subscriptions; shared across sockets of an endpoint so a re-bind does not reset the limit. */
  dropLog: LimitedLog;
}

/**
 * Reads the subscriptions of `socket` until it closes. Never sends, so it never waits on a slow
 * peer, and never throws on what a peer sent; it rethrows only a failure of the socket itself.
 */
export async function gateSubscriptions(
  socket: zmq.XPublisher,
  options: SubscriptionGateOptions,
): Promise<void> {
  const topic = Buffer.from(options.topic, "latin1");
  // Reached through a cast: the methods are protected in zeromq.js's typings, not in libzmq.
  const setOption = (socket as unknown as { setStringOption(option: number, value: Buffer): void })
    .setStringOption;
  for await (const frames of socket) {
    const verdict = judgeSubscription(frames, topic);
    if (verdict === "subscribe" || verdict === "unsubscribe") {
      setOption.call(socket, verdict === "subscribe" ? ZMQ_SUBSCRIBE : ZMQ_UNSUBSCRIBE, topic);
      options.metrics.inc("feed_subscriptions_total", { action: verdict });
      continue;
    }
    options.metrics.inc("feed_subscriptions_dropped_total", { reason: verdict });
    options.dropLog.warn(
      verdict,
      () => {
        const body = frames[0]?.subarray(1) ?? Buffer.alloc(0);
        return { reason: verdict, bytes: body.length, prefix: untrusted(body.subarray(0, 32), 32) };
      },
      "subscription dropped",
    );
  }
}
