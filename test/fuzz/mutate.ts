import { randomInt } from "node:crypto";
import type { SecretIdentity } from "../../src/keys/identity.js";
import { signRaw } from "../protocol/helpers.js";

/**
 * A seeded fuzzer's building blocks: a small deterministic PRNG and mutation operators on
 * multipart messages and on event payloads. Every run draws its seed from F2BZ_FUZZ_SEED or at
 * random; a failing test names it, and `F2BZ_FUZZ_SEED=<seed> npx ava test/fuzz/<file>` replays the
 * same messages.
 */
export interface Rng {
  readonly seed: number;
  /** [0, 1) */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Buffer;
}

export function fuzzSeed(): number {
  const fixed = process.env.F2BZ_FUZZ_SEED;
  return fixed === undefined ? randomInt(2 ** 31) : Number(fixed);
}

/** mulberry32: 32-bit state, good enough to spread mutations, and the same on every platform. */
export function rng(seed: number): Rng {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    seed,
    next,
    int,
    pick: (items) => items[int(items.length)]!,
    bytes: (n) => {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i++) out[i] = int(256);
      return out;
    },
  };
}

export type FrameMutation =
  | "bit-flip"
  | "truncate"
  | "extend"
  | "drop-frame"
  | "add-frame"
  | "duplicate-frame"
  | "empty-frame"
  | "huge-frame"
  | "random-frame"
  | "swap-frames"
  | "random-message";

const FRAME_MUTATIONS: readonly FrameMutation[] = [
  "bit-flip",
  "truncate",
  "extend",
  "drop-frame",
  "add-frame",
  "duplicate-frame",
  "empty-frame",
  "huge-frame",
  "random-frame",
  "swap-frames",
  "random-message",
];

/**
 * One to three mutations of a valid message, fresh buffers (zeromq may send them without copying).
 * No frame grows past `maxFrameBytes`, the receiving socket's maxMessageSize: a larger one ends the
 * connection inside libzmq and never reaches the application. Never returns zero frames.
 */
export function mutateFrames(r: Rng, valid: readonly Buffer[], maxFrameBytes: number): Buffer[] {
  let frames: Buffer[] = valid.map((f) => Buffer.from(f));
  const rounds = 1 + r.int(3);
  for (let i = 0; i < rounds; i++) frames = mutateOnce(r, frames, r.pick(FRAME_MUTATIONS), maxFrameBytes);
  return frames.length === 0 ? [Buffer.alloc(0)] : frames;
}

function mutateOnce(r: Rng, frames: Buffer[], how: FrameMutation, max: number): Buffer[] {
  const at = r.int(frames.length);
  const frame = frames[at] ?? Buffer.alloc(0);
  const replace = (next: Buffer) => frames.map((f, i) => (i === at ? next : f));
  switch (how) {
    case "bit-flip": {
      if (frame.length === 0) return replace(r.bytes(1));
      const copy = Buffer.from(frame);
      const flips = 1 + r.int(4);
      for (let i = 0; i < flips; i++) {
        const index = r.int(copy.length);
        copy[index] = copy[index]! ^ (1 << r.int(8));
      }
      return replace(copy);
    }
    case "truncate":
      return replace(Buffer.from(frame.subarray(0, r.int(frame.length + 1))));
    case "extend":
      return replace(Buffer.concat([frame, r.bytes(1 + r.int(64))]).subarray(0, max));
    case "drop-frame":
      return frames.filter((_, i) => i !== at);
    case "add-frame":
      return frames.toSpliced(r.int(frames.length + 1), 0, r.bytes(r.int(80)));
    case "duplicate-frame":
      return frames.toSpliced(at, 0, Buffer.from(frame));
    case "empty-frame":
      return replace(Buffer.alloc(0));
    case "huge-frame":
      // Up to the socket's limit, half of them exactly at it.
      return replace(Buffer.alloc(r.int(2) === 0 ? max : 1 + r.int(max), r.int(256)));
    case "random-frame":
      return replace(r.bytes(r.int(Math.min(max, 600) + 1)));
    case "swap-frames": {
      const other = r.int(frames.length);
      return frames.map((f, i) => (i === at ? frames[other]! : i === other ? frame : f));
    }
    case "random-message":
      return Array.from({ length: 1 + r.int(6) }, () => r.bytes(r.int(Math.min(max, 200) + 1)));
  }
}

/** The canonical key order of a v1 payload (protocol/event.ts). */
const FIELDS = ["v", "key", "id", "origin", "seq", "kind", "jail", "ip", "time", "expires", "name"] as const;

const WRONG_VALUES: readonly unknown[] = [
  null,
  true,
  0,
  -1,
  1.5,
  2 ** 53,
  "",
  "1",
  [],
  ["ban"],
  "x".repeat(300),
  "203.0.113.5/24",
  "::ffff:203.0.113.5",
  "0x7f.1",
  "\u0000",
];

/**
 * Payload bytes that are valid JSON, or nearly, and not the one canonical encoding of a valid
 * event: a field of the wrong type or value, a missing or extra key, keys reordered, whitespace,
 * an escaped character, a duplicated key, another version. `fields` is a valid event's object.
 */
export function malformedPayload(r: Rng, fields: Record<string, unknown>): Buffer {
  const json = (value: Record<string, unknown>) => JSON.stringify(value);
  const field = r.pick(FIELDS);
  switch (r.int(9)) {
    case 0:
      return Buffer.from(json({ ...fields, [field]: r.pick(WRONG_VALUES) }));
    case 1: {
      const { [field]: _dropped, ...rest } = fields;
      return Buffer.from(json(rest));
    }
    case 2:
      return Buffer.from(json({ ...fields, [r.pick(["extra", "__proto__", "constructor", "V"])]: 1 }));
    case 3: {
      const keys = Object.keys(fields);
      const i = 2 + r.int(keys.length - 2);
      [keys[i - 1], keys[i]] = [keys[i]!, keys[i - 1]!];
      return Buffer.from(json(Object.fromEntries(keys.map((k) => [k, fields[k]]))));
    }
    case 4:
      return Buffer.from(JSON.stringify(fields, null, r.int(3)).replace('"kind":', '"kind" : '));
    case 5:
      return Buffer.from(
        json(fields).replace(/"kind":"(.)/, (_, c: string) => `"kind":"\\u00${c.charCodeAt(0).toString(16)}`),
      );
    case 6: {
      const text = json(fields);
      return Buffer.from(
        `${text.slice(0, -1)},"kind":${JSON.stringify(fields.kind === "ban" ? "unban" : "ban")}}`,
      );
    }
    case 7:
      return Buffer.from(json({ ...fields, v: r.pick([0, 2, "1", 1.0000001]) }));
    default:
      return Buffer.from(json({ ...fields, [field]: { nested: fields[field] } }));
  }
}

/** A message whose payload is malformed as above, signed with `identity` (so it passes the signature). */
export async function signedMalformed(
  r: Rng,
  identity: SecretIdentity,
  fields: Record<string, unknown>,
): Promise<Buffer[]> {
  const payload = malformedPayload(r, fields);
  return [Buffer.from("f2bz/1", "latin1"), payload, await signRaw(identity, payload)];
}
