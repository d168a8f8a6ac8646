import type * as zmq from "zeromq";
import type { SecretIdentity } from "../src/keys/identity.js";
import { decodeFeed, encodeHeartbeat, encodeUpdate, TOPIC_UPDATE } from "../src/protocol/feed.js";
import { encodeEventFrames } from "../src/protocol/frames.js";
import type { SignedEvent } from "../src/protocol/signature.js";
import { decodeSubmitReply, encodeAck } from "../src/protocol/submit.js";
import { startPublisher } from "../src/publisher/daemon.js";
import { createClientSocket, createServerSocket, createTransportContext } from "../src/transport/sockets.js";
import { ZapHandler, type ZapRegistry } from "../src/transport/zap.js";
import { allowList, inScratch, presigner, type Scratch, silent } from "./lib/cluster.js";
import type { BenchResult, Row } from "./lib/result.js";
import { median, percentile, range } from "./lib/stats.js";

export interface FanoutOptions {
  subscribers: number;
  rounds: number;
  eventsPerRound: number;
}

const DEADLINE_MS = 10_000;
const MAX_VARIANT_MS = 3_000;

/**
 * (c) Latency from submit to receipt at each of N subscribers (raw CURVE SUB sockets, one process),
 * one event in flight at a time: the next event is submitted once every subscriber has the last,
 * so no queueing hides in the figures. Baselines, same keys, same frames, same factory and ZAP:
 * a bare PUB/SUB (send to receipt), and a bare REQ→REP→PUB relay (the same two hops as the
 * publisher, without its checks and its fsync'd commit).
 */
export async function benchFanout(options: FanoutOptions): Promise<BenchResult> {
  const started = Date.now();
  return inScratch("fanout", (dir) => run(dir, options, started));
}

type Variant = "pubsub" | "relay" | "f2bz";

async function run(dir: Scratch, options: FanoutOptions, started: number): Promise<BenchResult> {
  const publisherId = await dir.identity("pub");
  const monitorId = await dir.identity("mon", "monitor");
  const subscriberIds: SecretIdentity[] = [];
  for (let i = 0; i < options.subscribers; i++)
    subscriberIds.push(await dir.identity(`sub${i}`, "subscriber"));

  const publisher = await startPublisher(dir.publisherConfig(publisherId), silent);
  const bare = await startBare(publisherId, monitorId, subscriberIds);
  const receivers = new Receivers();
  const sockets: zmq.Socket[] = [];
  const connect = <S extends zmq.Socket>(socket: S, endpoint: string): S => {
    socket.connect(endpoint);
    sockets.push(socket);
    return socket;
  };
  try {
    const feeds = { f2bz: publisher.endpoints.feed, pubsub: bare.feed };
    for (const identity of subscriberIds) {
      for (const [name, endpoint] of Object.entries(feeds)) {
        const sub = createClientSocket("subscriber", { identity, serverKey: publisherId.curvePublic });
        sub.subscribe(TOPIC_UPDATE);
        receivers.listen(name === "f2bz" ? "f2bz" : "bare", connect(sub, endpoint));
      }
    }
    const request = (endpoint: string) => {
      const socket = createClientSocket("request", {
        identity: monitorId,
        serverKey: publisherId.curvePublic,
      });
      socket.receiveTimeout = DEADLINE_MS;
      return connect(socket, endpoint);
    };
    const toPublisher = request(publisher.endpoints.submit);
    const toRelay = request(bare.submit);
    // Every subscriber connected and subscribed: the publisher's heartbeat (every second) and the
    // bare PUB's probes reached all of them.
    await receivers.ready("f2bz", options.subscribers, () => {});
    await receivers.ready("bare", options.subscribers, () => bare.probe());

    const presign = presigner(monitorId);
    const submit = async (socket: zmq.Request, event: SignedEvent) => {
      await socket.send(encodeEventFrames(event.payload, event.signature));
      const reply = decodeSubmitReply(await socket.receive());
      if (!reply.ok || reply.message.type !== "ack") throw new Error("event not acknowledged");
    };
    const send: Record<Variant, (event: SignedEvent) => Promise<void>> = {
      f2bz: (event) => submit(toPublisher, event),
      relay: (event) => submit(toRelay, event),
      pubsub: (event) => bare.publish(event),
    };
    /** At most `MAX_VARIANT_MS` per variant and round, so that a slow machine still ends in time. */
    const deliveries = async (variant: Variant, events: SignedEvent[]) => {
      const samples: number[] = [];
      const end = Date.now() + MAX_VARIANT_MS;
      for (const event of events) {
        if (Date.now() > end && samples.length >= 20 * options.subscribers) break;
        const all = receivers.expect(
          variant === "f2bz" ? "f2bz" : "bare",
          event.payload,
          options.subscribers,
        );
        await send[variant](event);
        samples.push(...(await all));
      }
      return samples;
    };

    await deliveries("f2bz", await presign(20)); // warm-up
    await deliveries("relay", await presign(20));
    await deliveries("pubsub", await presign(20));
    const p50 = { pubsub: [] as number[], relay: [] as number[], f2bz: [] as number[] };
    const p99 = { pubsub: [] as number[], relay: [] as number[], f2bz: [] as number[] };
    for (let round = 0; round < options.rounds; round++) {
      const events = await presign(options.eventsPerRound);
      const order: Variant[] = ["pubsub", "relay", "f2bz"];
      for (const variant of round % 2 === 0 ? order : order.reverse()) {
        const samples = await deliveries(variant, events);
        p50[variant].push(percentile(samples, 50));
        p99[variant].push(percentile(samples, 99));
      }
    }

    const rows: Row[] = [];
    const base = "bare PUB/SUB";
    const names: Record<Variant, string> = {
      pubsub: `${base} (baseline)`,
      relay: "bare REQ→REP→PUB relay (context)",
      f2bz: "f2bz: submit → publisher → SUB",
    };
    for (const variant of ["pubsub", "relay", "f2bz"] as const) {
      for (const [label, figures] of [
        ["p50", p50],
        ["p99", p99],
      ] as const) {
        const costs = figures[variant].map((v, i) => v / figures.pubsub[i]!);
        rows.push({
          what: `${names[variant]} ${label}`,
          value: median(figures[variant]),
          unit: "µs",
          ...(variant === "pubsub"
            ? {}
            : { baseline: `${names.pubsub} ${label}`, cost: median(costs), costRange: range(costs) }),
        });
      }
    }
    const overRelay = p50.f2bz.map((v, i) => v / p50.relay[i]!);
    return {
      name: "fanout",
      title: `(c) fan-out latency to ${options.subscribers} CURVE SUB sockets, one event in flight, ${options.rounds} rounds × ${options.eventsPerRound} events`,
      rows,
      notes: [
        "latency = submit (or send) to receipt, every subscriber counted; cost = latency ÷ bare PUB/SUB latency, per round",
        `f2bz p50 over the relay with the same two hops: ${median(overRelay).toFixed(2)}× [${range(overRelay)
          .map((v) => v.toFixed(2))
          .join("–")}] (f2bz's checks and its fsync'd commit)`,
        `check: the publisher broadcast ${publisher.metrics.get("submissions_accepted_total", { outcome: "broadcast" })} events`,
      ],
      seconds: (Date.now() - started) / 1000,
      rssMiB: process.memoryUsage.rss() / 2 ** 20,
    };
  } finally {
    for (const socket of sockets) socket.close();
    await receivers.done();
    await bare.close();
    await publisher.close();
  }
}

/** The SUB sockets' receive loops and what the benchmark waits for. */
class Receivers {
  private readonly loops: Promise<void>[] = [];
  private readonly seen = { f2bz: new Set<zmq.Subscriber>(), bare: new Set<zmq.Subscriber>() };
  private readonly wake = new Set<() => void>();
  private current:
    | {
        group: "f2bz" | "bare";
        payload: Buffer;
        t0: bigint;
        samples: number[];
        remaining: number;
        done: () => void;
      }
    | undefined;

  listen(group: "f2bz" | "bare", socket: zmq.Subscriber): void {
    this.loops.push(
      (async () => {
        for await (const frames of socket) {
          const at = process.hrtime.bigint();
          const message = decodeFeed(frames);
          if (!message.ok) continue;
          if (!this.seen[group].has(socket)) {
            this.seen[group].add(socket);
            for (const wake of this.wake) wake();
          }
          const c = this.current;
          if (
            c?.group === group &&
            message.message.type === "update" &&
            message.message.payload.equals(c.payload)
          ) {
            c.samples.push(Number(at - c.t0) / 1000);
            if (--c.remaining === 0) c.done();
          }
        }
      })().catch(() => {}),
    );
  }

  /** Resolves once `count` sockets of the group received anything; `probe` is called meanwhile. */
  async ready(group: "f2bz" | "bare", count: number, probe: () => void): Promise<void> {
    const deadline = Date.now() + DEADLINE_MS;
    while (this.seen[group].size < count) {
      if (Date.now() > deadline)
        throw new Error(`only ${this.seen[group].size} of ${count} ${group} subscribers joined`);
      probe();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(finish, 20);
        function finish() {
          clearTimeout(timer);
          resolve();
        }
        this.wake.add(finish);
      });
      this.wake.clear();
    }
  }

  /** Starts the clock; resolves with the latency (µs) of each of `count` receipts of `payload`. */
  expect(group: "f2bz" | "bare", payload: Buffer, count: number): Promise<number[]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`an event did not reach every ${group} subscriber`)),
        DEADLINE_MS,
      );
      const samples: number[] = [];
      this.current = {
        group,
        payload,
        t0: process.hrtime.bigint(),
        samples,
        remaining: count,
        done: () => {
          clearTimeout(timer);
          this.current = undefined;
          resolve(samples);
        },
      };
    });
  }

  done(): Promise<unknown> {
    return Promise.all(this.loops);
  }
}

/** The transport alone: a PUB, and a REP that relays what it gets to that PUB, then acks. */
async function startBare(server: SecretIdentity, monitor: SecretIdentity, subscribers: SecretIdentity[]) {
  const context = createTransportContext();
  const submitList = allowList("submit", [monitor]);
  const feedList = allowList("feed", subscribers);
  const registry: ZapRegistry = { lookup: (d, k) => submitList.lookup(d, k) ?? feedList.lookup(d, k) };
  const zap = await ZapHandler.start({ context, registry, logger: silent });
  const pub = createServerSocket("publisher", {
    context,
    identity: server,
    domain: "feed",
    sendHighWaterMark: 10_000,
  });
  pub.sendTimeout = 0;
  await pub.bind("tcp://127.0.0.1:*");
  const rep = createServerSocket("reply", { context, identity: server, domain: "submit" });
  await rep.bind("tcp://127.0.0.1:*");
  let seq = 0;
  const ackId = `${monitor.nodeId}:1000000000000`;
  const relay = (async () => {
    for await (const [, payload, signature] of rep) {
      await pub.send(encodeUpdate(payload!, signature!, ++seq));
      await rep.send(encodeAck(ackId));
    }
  })().catch(() => {});
  return {
    feed: pub.lastEndpoint!,
    submit: rep.lastEndpoint!,
    probe: () => void pub.send(encodeHeartbeat(seq)).catch(() => {}),
    publish: (event: SignedEvent) => pub.send(encodeUpdate(event.payload, event.signature, ++seq)),
    async close() {
      rep.close();
      pub.close();
      await relay;
      await zap.close();
    },
  };
}
