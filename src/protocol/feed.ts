import { parseAddress } from "../policy/address.js";
import { isValidJail } from "../policy/jail.js";
import {
  ascii,
  type Decoded,
  decimal,
  fail,
  MAX_DECIMAL_BYTES,
  ok,
  parseDecimal,
  parseJson,
} from "./codec.js";
import { isEventId, MAX_PAYLOAD_BYTES, SIGNATURE_BYTES } from "./event.js";
import { asBuffer, checkFrames, frameIs, TOPIC_EVENT } from "./frames.js";

/**
 * The PUB feed, publisher → subscribers (snapshot.ts has the catch-up, submit.ts the replies to
 * monitors):
 *
 *   update     [TOPIC_UPDATE, payload, signature, publisherSeq]
 *   expiry     [TOPIC_EXPIRE, {"jail","ip","id"}, "", publisherSeq]
 *   heartbeat  [TOPIC_HEARTBEAT, publisherSeq]
 *
 * Sequence numbers are ASCII decimal safe integers. The publisher numbers updates and expiries
 * from one counter, so a subscriber that sees a gap knows it missed something (PUB drops at the
 * high-water mark) and fetches a snapshot (the Clone pattern, ZeroMQ Guide ch. 5). A heartbeat
 * carries the last number used, without using one: it reveals a loss at the tail and, by its
 * absence, a dead publisher.
 *
 * Only updates carry an origin's signature; the rest is authenticated by CURVE as coming from the
 * pinned publisher. An expiry is unsigned, so a subscriber uses it only to lift a ban it holds
 * under that very event id.
 *
 * Decoders take untrusted frames, check count and sizes first, and return a result; they never
 * throw.
 */
export const TOPIC_UPDATE = TOPIC_EVENT;
export const TOPIC_EXPIRE = `${TOPIC_EVENT}/expire`;
export const TOPIC_HEARTBEAT = `${TOPIC_EVENT}/heartbeat`;

/** {"jail":<32>,"ip":<≤49>,"id":<≤49>} with quotes and separators is under 160 bytes. */
const MAX_EXPIRE_BYTES = 256;
/** The largest frame on the PUB feed: the SUB's maxMessageSize. */
export const MAX_FEED_FRAME_BYTES = MAX_PAYLOAD_BYTES;

export interface Expiry {
  jail: string;
  ip: string;
  id: string;
}

export type FeedMessage =
  | { type: "update"; payload: Buffer; signature: Buffer; seq: number }
  | ({ type: "expire"; seq: number } & Expiry)
  | { type: "heartbeat"; seq: number };

// Encoders build fresh buffers: zeromq sends large buffers without copying, so never reuse them.

export function encodeUpdate(payload: Uint8Array, signature: Uint8Array, seq: number): Buffer[] {
  return [ascii(TOPIC_UPDATE), Buffer.from(payload), Buffer.from(signature), decimal(seq, 1)];
}

export function encodeExpire(expiry: Expiry, seq: number): Buffer[] {
  return [ascii(TOPIC_EXPIRE), Buffer.from(expiryJson(expiry), "utf8"), Buffer.alloc(0), decimal(seq, 1)];
}

export function encodeHeartbeat(seq: number): Buffer[] {
  return [ascii(TOPIC_HEARTBEAT), decimal(seq, 0)];
}

/** What a SUB socket receives (its subscription prefix TOPIC_UPDATE covers every feed topic). */
export function decodeFeed(frames: readonly Uint8Array[]): Decoded<FeedMessage> {
  const topic = frames[0];
  if (frames.length === 2 && topic instanceof Uint8Array && frameIs(topic, TOPIC_HEARTBEAT)) {
    const bad = checkFrames(frames, 2, MAX_DECIMAL_BYTES);
    if (bad) return fail(bad);
    const seq = parseDecimal(frames[1]!, 0);
    return seq === undefined ? fail("schema") : ok({ type: "heartbeat", seq });
  }
  const bad = checkFrames(frames, 4, MAX_FEED_FRAME_BYTES);
  if (bad) return fail(bad);
  const [, body, extra, seqFrame] = frames as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  const seq = parseDecimal(seqFrame, 1);
  if (frameIs(topic!, TOPIC_UPDATE)) {
    if (body.byteLength === 0) return fail("size");
    if (extra.byteLength !== SIGNATURE_BYTES) return fail("signature");
    if (seq === undefined) return fail("schema");
    return ok({ type: "update", payload: asBuffer(body), signature: asBuffer(extra), seq });
  }
  if (frameIs(topic!, TOPIC_EXPIRE)) {
    if (body.byteLength > MAX_EXPIRE_BYTES) return fail("size");
    if (extra.byteLength !== 0 || seq === undefined) return fail("schema");
    const expiry = parseExpiry(body);
    return expiry.ok ? ok({ type: "expire", seq, ...expiry.message }) : expiry;
  }
  return fail("frames");
}

function parseExpiry(bytes: Uint8Array): Decoded<Expiry> {
  const parsed = parseJson(bytes);
  if (!parsed.ok) return parsed;
  const raw = parsed.message;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return fail("schema");
  const keys = Object.keys(raw);
  if (keys.length !== 3) return fail("schema");
  const { jail, ip, id } = raw as Record<string, unknown>;
  if (typeof jail !== "string" || !isValidJail(jail)) return fail("jail");
  if (typeof ip !== "string") return fail("ip");
  const address = parseAddress(ip, { allowCidr: true });
  if (!address.ok || address.ip !== ip) return fail("ip");
  if (typeof id !== "string" || !isEventId(id)) return fail("schema");
  const expiry: Expiry = { jail, ip, id };
  // One encoding only: no duplicate keys, no reordering, no whitespace.
  if (!Buffer.from(expiryJson(expiry), "utf8").equals(bytes)) return fail("schema");
  return ok(expiry);
}

function expiryJson(expiry: Expiry): string {
  return JSON.stringify({ jail: expiry.jail, ip: expiry.ip, id: expiry.id });
}
