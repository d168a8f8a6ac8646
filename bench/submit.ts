import path from "node:path";
import Database from "better-sqlite3";
import type * as zmq from "zeromq";
import type { SecretIdentity } from "../src/keys/identity.js";
import { encodeEventFrames } from "../src/protocol/frames.js";
import type { SignedEvent } from "../src/protocol/signature.js";
import { decodeSubmitReply, encodeAck } from "../src/protocol/submit.js";
import { startPublisher } from "../src/publisher/daemon.js";
import { createClientSocket, createServerSocket, createTransportContext } from "../src/transport/sockets.js";
import { ZapHandler } from "../src/transport/zap.js";
import { allowList, inScratch, presigner, type Scratch, silent } from "./lib/cluster.js";
import type { BenchResult } from "./lib/result.js";
import { median, opsPerSecond, range } from "./lib/stats.js";

export interface SubmitOptions {
  rounds: number;
  /** How long each side runs per round. */
  msPerRound: number;
}

/** Events signed for each round; a machine that submits them faster measures a shorter round. */
const EVENTS_PER_ROUND = 6_000;

/**
 * (b) Events per second through a real publisher: a monitor's CURVE REQ socket submits pre-signed
 * events in lockstep (send, wait for the ack, next), as the monitor does; the publisher checks,
 * stores (one SQLite transaction, fsync'd, per event) and broadcasts each. Baseline: a bare CURVE
 * REQ/REP echo from the same socket factory, with a ZAP handler and the same keys, answering the
 * same frames with an ack of the same size. A third figure, a durable SQLite commit alone with the
 * publisher's settings (WAL, synchronous=FULL), shows how much of the difference is the disk.
 */
export async function benchSubmit(options: SubmitOptions): Promise<BenchResult> {
  const started = Date.now();
  return inScratch("submit", (dir) => run(dir, options, started));
}

async function run(dir: Scratch, options: SubmitOptions, started: number): Promise<BenchResult> {
  const publisherId = await dir.identity("pub");
  const monitorId = await dir.identity("mon", "monitor");
  const publisher = await startPublisher(dir.publisherConfig(publisherId), silent);
  const echo = await startEcho(publisherId, monitorId);
  const client = (endpoint: string) => {
    const socket = createClientSocket("request", { identity: monitorId, serverKey: publisherId.curvePublic });
    socket.receiveTimeout = 10_000;
    socket.connect(endpoint);
    return socket;
  };
  const toPublisher = client(publisher.endpoints.submit);
  const toEcho = client(echo.endpoint);
  const commit = durableCommit(path.join(dir.dir, "commit.sqlite3"));
  let nacks = 0;
  let toF2bz = 0;
  try {
    const presign = presigner(monitorId);
    const submit = async (socket: zmq.Request, event: SignedEvent) => {
      // Fresh buffers per send: zeromq.js sends buffers over 128 bytes without copying.
      await socket.send(encodeEventFrames(event.payload, event.signature));
      if (socket === toPublisher) toF2bz++;
      const reply = decodeSubmitReply(await socket.receive());
      if (!reply.ok || reply.message.type !== "ack") nacks++;
    };
    /**
     * Events per second, one at a time, for `ms` or until the events run out (the publisher must
     * see each event once; the echo may see them again).
     */
    const lockstep = async (socket: zmq.Request, events: SignedEvent[], ms: number, cycle: boolean) => {
      const start = process.hrtime.bigint();
      const end = start + BigInt(ms * 1e6);
      let n = 0;
      while (process.hrtime.bigint() < end && (cycle || n < events.length)) {
        await submit(socket, events[n % events.length]!);
        n++;
      }
      return n / (Number(process.hrtime.bigint() - start) / 1e9);
    };
    // Warm-up: handshakes, JIT, the first pages of the state file.
    const warm = await presign(200);
    for (const event of warm) await submit(toPublisher, event);
    for (const event of warm) await submit(toEcho, event);

    const rates = { f2bz: [] as number[], echo: [] as number[], commit: [] as number[] };
    for (let round = 0; round < options.rounds; round++) {
      // After the first round, twice what the publisher took then: signing is not free either.
      const last = rates.f2bz.at(-1);
      const needed =
        last === undefined ? EVENTS_PER_ROUND : Math.ceil((last * options.msPerRound) / 500) + 200;
      const events = await presign(Math.min(EVENTS_PER_ROUND, needed));
      const sides: [keyof typeof rates, () => Promise<number>][] = [
        ["f2bz", () => lockstep(toPublisher, events, options.msPerRound, false)],
        ["echo", () => lockstep(toEcho, events, options.msPerRound, true)],
        ["commit", () => opsPerSecond(commit.run, options.msPerRound / 2, 1)],
      ];
      if (round % 2 === 1) sides.reverse();
      for (const [side, measureSide] of sides) rates[side].push(await measureSide());
    }
    const broadcast = publisher.metrics.get("submissions_accepted_total", { outcome: "broadcast" });
    const costs = rates.f2bz.map((r, i) => rates.echo[i]! / r);
    const micros = (rate: number) => Math.round(1e6 / rate);
    return {
      name: "submit",
      title: `(b) submit path, CURVE REQ lockstep on 127.0.0.1, ${options.rounds} rounds × ${options.msPerRound} ms`,
      rows: [
        { what: "bare CURVE REQ/REP echo (baseline)", value: median(rates.echo), unit: "events/s" },
        {
          what: "f2bz publisher: verify + store + broadcast",
          value: median(rates.f2bz),
          unit: "events/s",
          baseline: "bare CURVE REQ/REP echo (baseline)",
          cost: median(costs),
          costRange: range(costs),
        },
        { what: "durable SQLite commit alone (context)", value: median(rates.commit), unit: "commits/s" },
      ],
      notes: [
        "cost = echo events/s ÷ publisher events/s per round: what f2bz adds over the transport alone",
        `per event: transport ${micros(median(rates.echo))} µs, publisher ${micros(median(rates.f2bz))} µs; a durable SQLite commit alone ${micros(median(rates.commit))} µs (WAL, synchronous=FULL: disk-bound, the noisiest figure)`,
        `check: the publisher broadcast ${broadcast} of ${toF2bz} events submitted; ${nacks} nacks`,
      ],
      seconds: (Date.now() - started) / 1000,
      rssMiB: process.memoryUsage.rss() / 2 ** 20,
    };
  } finally {
    toPublisher.close();
    toEcho.close();
    commit.close();
    await echo.close();
    await publisher.close();
  }
}

/** The transport alone: same factory, same ZAP check, same keys, same frames in, same-size ack out. */
async function startEcho(server: SecretIdentity, client: SecretIdentity) {
  const context = createTransportContext();
  const zap = await ZapHandler.start({ context, registry: allowList("submit", [client]), logger: silent });
  const socket = createServerSocket("reply", { context, identity: server, domain: "submit" });
  await socket.bind("tcp://127.0.0.1:*");
  const ackId = `${client.nodeId}:1000000000000`;
  const loop = (async () => {
    for await (const _frames of socket) await socket.send(encodeAck(ackId));
  })();
  return {
    endpoint: socket.lastEndpoint!,
    async close() {
      socket.close();
      await loop.catch(() => {});
      await zap.close();
    },
  };
}

/** One small row per transaction, durably, with the settings of src/state/database.ts. */
function durableCommit(file: string) {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.exec("CREATE TABLE seen (id TEXT PRIMARY KEY, time INTEGER NOT NULL) WITHOUT ROWID");
  const insert = db.prepare("INSERT INTO seen (id, time) VALUES (?, ?)");
  let n = 0;
  return {
    run: () => {
      insert.run(`event:${n++}`, Date.now());
    },
    close: () => db.close(),
  };
}
