import test from "ava";
import { generateIdentity } from "../../src/keys/identity.js";
import { type Decoded, ok } from "../../src/protocol/codec.js";
import { encodePayload, parseVerifiedPayload } from "../../src/protocol/event.js";
import {
  decodeFeed,
  encodeExpire,
  encodeHeartbeat,
  encodeUpdate,
  type FeedMessage,
  MAX_FEED_FRAME_BYTES,
} from "../../src/protocol/feed.js";
import { decodeEventFrames, encodeEventFrames } from "../../src/protocol/frames.js";
import {
  decodeSnapshotReply,
  encodeBusy,
  encodeChunk,
  encodeEnd,
  MAX_CHUNK_BYTES,
  type SnapshotReply,
} from "../../src/protocol/snapshot.js";
import { decodeSubmitReply, encodeAck, encodeNack, type SubmitReply } from "../../src/protocol/submit.js";
import { sign } from "../publisher/helpers.js";
import { fuzzSeed, malformedPayload, mutateFrames, type Rng, rng } from "./mutate.js";

/**
 * The pure decoders under the same mutations as the daemons, many more of them (no sockets): none
 * may throw, and whatever one accepts must be the one canonical encoding of what it decoded, which
 * the encoders give independently. The last test runs the harness against a decoder broken on
 * purpose, to show it finds what it is meant to find.
 */
const seed = fuzzSeed();
const ROUNDS = 20_000;

type Decoder<T> = (frames: readonly Uint8Array[]) => Decoded<T>;

/** The first mutated input on which `decode` throws or accepts bytes `encode` would not write. */
function counterexample<T>(
  r: Rng,
  bases: readonly Buffer[][],
  decode: Decoder<T>,
  encode: (message: T) => Buffer[],
  maxFrameBytes: number,
): string | undefined {
  for (let i = 0; i < ROUNDS; i++) {
    const frames = mutateFrames(r, r.pick(bases), maxFrameBytes);
    let result: Decoded<T>;
    try {
      result = decode(frames);
    } catch (error) {
      return `threw ${String(error)} on ${describe(frames)}`;
    }
    if (!result.ok) continue;
    const again = encode(result.message);
    if (again.length !== frames.length || again.some((f, j) => !f.equals(frames[j]!))) {
      return `accepted non-canonical ${describe(frames)}`;
    }
  }
  return undefined;
}

function describe(frames: readonly Buffer[]): string {
  return JSON.stringify(frames.map((f) => (f.length > 80 ? `${f.length} bytes` : f.toString("latin1"))));
}

const feedEncode = (m: FeedMessage): Buffer[] =>
  m.type === "update"
    ? encodeUpdate(m.payload, m.signature, m.seq)
    : m.type === "expire"
      ? encodeExpire({ jail: m.jail, ip: m.ip, id: m.id }, m.seq)
      : encodeHeartbeat(m.seq);

async function feedBases(): Promise<Buffer[][]> {
  const identity = await generateIdentity("fuzz");
  const event = await sign(identity, { seq: 9, ip: "2001:db8::9" });
  return [
    encodeUpdate(event.payload, event.signature, 42),
    encodeExpire({ jail: "sshd", ip: "192.0.2.9", id: event.event.id }, 43),
    encodeHeartbeat(44),
  ];
}

test("fuzz decoders: the feed decoder never throws and accepts only canonical messages", async (t) => {
  t.log(`seed ${seed}`);
  const found = counterexample(
    rng(seed),
    await feedBases(),
    decodeFeed,
    feedEncode,
    MAX_FEED_FRAME_BYTES + 8,
  );
  t.is(found, undefined, `seed ${seed}`);
});

test("fuzz decoders: event frames, snapshot replies and submit replies", async (t) => {
  t.log(`seed ${seed}`);
  const identity = await generateIdentity("fuzz");
  const event = await sign(identity, { seq: 3, ip: "192.0.2.3" });
  const r = rng(seed ^ 1);
  t.is(
    counterexample(
      r,
      [encodeEventFrames(event.payload, event.signature)],
      (frames) => {
        const m = decodeEventFrames(frames);
        return m.ok ? ok(m) : m;
      },
      (m) => encodeEventFrames(m.payload, m.signature),
      2_048,
    ),
    undefined,
    `seed ${seed}`,
  );
  const entry = { payload: event.payload, signature: event.signature };
  const snapshotEncode = (m: SnapshotReply): Buffer[] =>
    m.type === "chunk"
      ? encodeChunk(m.entries)
      : m.type === "end"
        ? encodeEnd(m.seq, m.count)
        : encodeBusy(m.retryAfterMs);
  t.is(
    counterexample(
      r,
      [encodeChunk([entry, entry]), encodeEnd(7, 2), encodeBusy(1000)],
      decodeSnapshotReply,
      snapshotEncode,
      MAX_CHUNK_BYTES,
    ),
    undefined,
    `seed ${seed}`,
  );
  const submitEncode = (m: SubmitReply): Buffer[] =>
    m.type === "ack" ? encodeAck(m.id) : encodeNack(m.id, m.reason);
  t.is(
    counterexample(
      r,
      [encodeAck(event.event.id), encodeNack(event.event.id, "replay"), encodeNack("", "frames")],
      decodeSubmitReply,
      submitEncode,
      128,
    ),
    undefined,
    `seed ${seed}`,
  );
});

test("fuzz decoders: a signed payload parses only in its one encoding", async (t) => {
  t.log(`seed ${seed}`);
  const identity = await generateIdentity("fuzz");
  const event = await sign(identity, { seq: 5, ip: "203.0.113.5" });
  const fields = JSON.parse(event.payload.toString("utf8")) as Record<string, unknown>;
  const r = rng(seed ^ 2);
  const bad: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const payload =
      r.int(2) === 0 ? malformedPayload(r, fields) : mutateFrames(r, [event.payload], 1_100)[0]!;
    const parsed = parseVerifiedPayload(payload);
    if (parsed.ok && !encodePayload(parsed.event).equals(payload)) bad.push(payload.toString("latin1"));
  }
  t.deepEqual(bad, [], `seed ${seed}`);
});

test("the decoder fuzz finds a decoder broken on purpose (it can fail)", async (t) => {
  // A feed decoder that forgets the canonical check of decimals: "042" read as 42.
  const lenient: Decoder<FeedMessage> = (frames) => {
    const [topic, seqFrame] = frames;
    if (
      frames.length === 2 &&
      topic?.toString() === "f2bz/1/heartbeat" &&
      seqFrame &&
      /^\d{1,16}$/.test(seqFrame.toString())
    ) {
      return ok({ type: "heartbeat", seq: Number(seqFrame.toString()) });
    }
    return decodeFeed(frames);
  };
  const found = counterexample(rng(seed), await feedBases(), lenient, feedEncode, MAX_FEED_FRAME_BYTES + 8);
  t.truthy(found, `seed ${seed}: the mutations never produced a heartbeat with a non-canonical number`);
  t.log(found);
});
