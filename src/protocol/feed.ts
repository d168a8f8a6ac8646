import { F2bzError } from "../errors.js";
import { parseAddress } from "../policy/address.js";
import { isValidJail } from "../policy/jail.js";
import { isEventId, MAX_PAYLOAD_BYTES, SIGNATURE_BYTES } from "./event.js";
import { asBuffer, checkFrames, frameIs, TOPIC_EVENT } from "./frames.js";
import { isRejectReason, type RejectReason } from "./reasons.js";

/**
 * Messages between publisher, subscribers and monitors, after the event itself (frames.ts):
 *
 *   PUB update        [TOPIC_UPDATE, payload, signature, publisherSeq]      publisher → subscribers
 *   PUB expiry        [TOPIC_EXPIRE, {"jail","ip","id"}, "", publisherSeq]  publisher → subscribers
 *   PUB heartbeat     [TOPIC_HEARTBEAT, publisherSeq]                       publisher → subscribers
 *   snapshot request  [TOPIC_SNAPSHOT]                                      DEALER → ROUTER
 *   snapshot credit   [TOPIC_CREDIT]                                        DEALER → ROUTER
 *   snapshot chunk    [TOPIC_CHUNK, [[payloadBase64, signatureBase64], …]]  ROUTER → DEALER, ≤ 200
 *   snapshot end      [TOPIC_END, publisherSeq, count]                      ROUTER → DEALER
 *   snapshot busy     [TOPIC_BUSY, retryAfterMs]                            ROUTER → DEALER
 *   submit ack        [TOPIC_ACK, eventId]                                  publisher → monitor
 *   submit nack       [TOPIC_NACK, eventId, reason]                         publisher → monitor
 *
 * Sequence numbers and counts are ASCII decimal safe integers. The publisher numbers updates and
 * expiries from one counter, so a subscriber that sees a gap knows it missed something (PUB drops
 * at the high-water mark) and fetches a snapshot (the Clone pattern, ZeroMQ Guide ch. 5). A
 * heartbeat carries the last number used, without using one: it reveals a loss at the tail and,
 * by its absence, a dead publisher.
 *
 * A snapshot is streamed with credit-based flow control (ZeroMQ Guide ch. 7): a request grants
 * SNAPSHOT_WINDOW chunks, and each credit message one more, so neither side ever holds more than a
 * window of a large active set; the end marker needs no credit. A publisher that will not start a
 * snapshot now (one already in flight for this peer, or too many for all) says `busy` instead of
 * staying silent, and the subscriber asks again after `retryAfterMs`.
 *
 * Only events carry an origin's signature; the rest is authenticated by CURVE as coming from the
 * pinned publisher. An expiry is unsigned, so a subscriber uses it only to lift a ban it holds
 * under that very event id, and snapshot entries are verified like live events.
 *
 * Decoders take untrusted frames (on a ROUTER, without the routing id), check count and sizes
 * first, and return a result; they never throw.
 */
export const TOPIC_UPDATE = TOPIC_EVENT;
export const TOPIC_EXPIRE = `${TOPIC_EVENT}/expire`;
export const TOPIC_HEARTBEAT = `${TOPIC_EVENT}/heartbeat`;
export const TOPIC_SNAPSHOT = `${TOPIC_EVENT}/snapshot`;
export const TOPIC_CHUNK = `${TOPIC_EVENT}/chunk`;
export const TOPIC_END = `${TOPIC_EVENT}/end`;
export const TOPIC_CREDIT = `${TOPIC_EVENT}/credit`;
export const TOPIC_BUSY = `${TOPIC_EVENT}/busy`;
export const TOPIC_ACK = `${TOPIC_EVENT}/ack`;
export const TOPIC_NACK = `${TOPIC_EVENT}/nack`;

export const MAX_CHUNK_ENTRIES = 200;
/** Chunks a snapshot request grants before the first credit: 8 × ≤ 290 KB in flight per stream. */
export const SNAPSHOT_WINDOW = 8;
const MAX_TOPIC_BYTES = 32;
const MAX_DECIMAL_BYTES = 16;
/** {"jail":<32>,"ip":<≤49>,"id":<≤49>} with quotes and separators is under 160 bytes. */
const MAX_EXPIRE_BYTES = 256;
const base64Length = (bytes: number): number => Math.ceil(bytes / 3) * 4;
/** `["<payload>","<signature>"],` at their largest. */
const MAX_ENTRY_BYTES = base64Length(MAX_PAYLOAD_BYTES) + base64Length(SIGNATURE_BYTES) + 8;
/** The largest frame a snapshot reply carries (about 290 KB): the DEALER's maxMessageSize. */
export const MAX_CHUNK_BYTES = 2 + MAX_CHUNK_ENTRIES * MAX_ENTRY_BYTES;
/** The largest frame on the PUB feed: the SUB's maxMessageSize. */
export const MAX_FEED_FRAME_BYTES = MAX_PAYLOAD_BYTES;

export interface SnapshotEntry {
  payload: Buffer;
  signature: Buffer;
}

export interface Expiry {
  jail: string;
  ip: string;
  id: string;
}

export type FeedMessage =
  | { type: "update"; payload: Buffer; signature: Buffer; seq: number }
  | ({ type: "expire"; seq: number } & Expiry)
  | { type: "heartbeat"; seq: number };

export type SnapshotRequest = { type: "snapshot" } | { type: "credit" };

export type SnapshotReply =
  | { type: "chunk"; entries: SnapshotEntry[] }
  | { type: "end"; seq: number; count: number }
  | { type: "busy"; retryAfterMs: number };

export type SubmitReply = { type: "ack"; id: string } | { type: "nack"; id: string; reason: RejectReason };

export type Decoded<T> = { ok: true; message: T } | { ok: false; reason: RejectReason };

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

export function encodeSnapshotRequest(): Buffer[] {
  return [ascii(TOPIC_SNAPSHOT)];
}

export function encodeCredit(): Buffer[] {
  return [ascii(TOPIC_CREDIT)];
}

export function encodeBusy(retryAfterMs: number): Buffer[] {
  return [ascii(TOPIC_BUSY), decimal(retryAfterMs, 0)];
}

export function encodeChunk(entries: readonly SnapshotEntry[]): Buffer[] {
  if (entries.length === 0 || entries.length > MAX_CHUNK_ENTRIES) {
    throw new F2bzError(
      "INTERNAL",
      `snapshot chunk of ${entries.length} entries, expected 1 to ${MAX_CHUNK_ENTRIES}`,
    );
  }
  const json = JSON.stringify(
    entries.map((e) => [
      Buffer.from(e.payload).toString("base64"),
      Buffer.from(e.signature).toString("base64"),
    ]),
  );
  return [ascii(TOPIC_CHUNK), Buffer.from(json, "latin1")];
}

export function encodeEnd(seq: number, count: number): Buffer[] {
  return [ascii(TOPIC_END), decimal(seq, 0), decimal(count, 0)];
}

/** A whole snapshot reply: the chunks, then the end marker with the publisher sequence it matches. */
export function encodeSnapshot(entries: readonly SnapshotEntry[], seq: number): Buffer[][] {
  const messages: Buffer[][] = [];
  for (let i = 0; i < entries.length; i += MAX_CHUNK_ENTRIES) {
    messages.push(encodeChunk(entries.slice(i, i + MAX_CHUNK_ENTRIES)));
  }
  messages.push(encodeEnd(seq, entries.length));
  return messages;
}

export function encodeAck(id: string): Buffer[] {
  return [ascii(TOPIC_ACK), ascii(id)];
}

export function encodeNack(id: string, reason: RejectReason): Buffer[] {
  return [ascii(TOPIC_NACK), ascii(id), ascii(reason)];
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

/** What the snapshot ROUTER receives, after the routing id frame. */
export function decodeSnapshotRequest(frames: readonly Uint8Array[]): Decoded<SnapshotRequest> {
  const bad = checkFrames(frames, 1, MAX_TOPIC_BYTES);
  if (bad) return fail(bad);
  if (frameIs(frames[0]!, TOPIC_SNAPSHOT)) return ok({ type: "snapshot" });
  return frameIs(frames[0]!, TOPIC_CREDIT) ? ok({ type: "credit" }) : fail("frames");
}

/** What the snapshot DEALER receives. Entries still need verifyEvent, one by one. */
export function decodeSnapshotReply(frames: readonly Uint8Array[]): Decoded<SnapshotReply> {
  const topic = frames[0];
  if (frames.length === 2 && topic instanceof Uint8Array && frameIs(topic, TOPIC_CHUNK)) {
    const bad = checkFrames(frames, 2, MAX_CHUNK_BYTES);
    if (bad) return fail(bad);
    return parseChunk(frames[1]!);
  }
  if (frames.length === 3 && topic instanceof Uint8Array && frameIs(topic, TOPIC_END)) {
    const bad = checkFrames(frames, 3, MAX_DECIMAL_BYTES);
    if (bad) return fail(bad);
    const seq = parseDecimal(frames[1]!, 0);
    const count = parseDecimal(frames[2]!, 0);
    if (seq === undefined || count === undefined) return fail("schema");
    return ok({ type: "end", seq, count });
  }
  if (frames.length === 2 && topic instanceof Uint8Array && frameIs(topic, TOPIC_BUSY)) {
    const bad = checkFrames(frames, 2, MAX_DECIMAL_BYTES);
    if (bad) return fail(bad);
    const retryAfterMs = parseDecimal(frames[1]!, 0);
    return retryAfterMs === undefined ? fail("schema") : ok({ type: "busy", retryAfterMs });
  }
  return fail("frames");
}

/** What a monitor's REQ socket receives after submitting an event. */
export function decodeSubmitReply(frames: readonly Uint8Array[]): Decoded<SubmitReply> {
  const count = frames.length;
  if (count !== 2 && count !== 3) return fail("frames");
  const bad = checkFrames(frames, count, MAX_TOPIC_BYTES * 2);
  if (bad) return fail(bad);
  const [topic, idFrame, reasonFrame] = frames as [Uint8Array, Uint8Array, Uint8Array | undefined];
  const id = asBuffer(idFrame).toString("latin1");
  if (count === 2 && frameIs(topic, TOPIC_ACK)) {
    return isEventId(id) ? ok({ type: "ack", id }) : fail("schema");
  }
  if (count === 3 && reasonFrame && frameIs(topic, TOPIC_NACK)) {
    const reason = asBuffer(reasonFrame).toString("latin1");
    // An empty id: the publisher could not read the event at all (frames, size, version, schema).
    return (id === "" || isEventId(id)) && isRejectReason(reason)
      ? ok({ type: "nack", id, reason })
      : fail("schema");
  }
  return fail("frames");
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function parseJson(bytes: Uint8Array): Decoded<unknown> {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return fail("encoding");
  }
  try {
    // Only flat objects (expiry) and arrays of arrays of strings (chunk) are valid: refuse any
    // object below the root, which also keeps `__proto__` and friends out.
    return ok(
      JSON.parse(text, (key, value: unknown) => {
        if (key !== "" && typeof value === "object" && value !== null && !Array.isArray(value)) {
          throw new SyntaxError("nested object");
        }
        return value;
      }),
    );
  } catch {
    return fail("schema");
  }
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

function parseChunk(bytes: Uint8Array): Decoded<SnapshotReply> {
  const parsed = parseJson(bytes);
  if (!parsed.ok) return parsed;
  const raw = parsed.message;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_CHUNK_ENTRIES) return fail("schema");
  const entries: SnapshotEntry[] = [];
  for (const item of raw as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2) return fail("schema");
    const payload = strictBase64(item[0]);
    const signature = strictBase64(item[1]);
    if (!payload || !signature) return fail("schema");
    if (payload.byteLength === 0 || payload.byteLength > MAX_PAYLOAD_BYTES) return fail("size");
    if (signature.byteLength !== SIGNATURE_BYTES) return fail("signature");
    entries.push({ payload, signature });
  }
  return ok({ type: "chunk", entries });
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Buffer.from(…, "base64") skips invalid characters silently; only the canonical form is taken. */
function strictBase64(value: unknown): Buffer | undefined {
  if (typeof value !== "string" || !BASE64.test(value)) return undefined;
  const bytes = Buffer.from(value, "base64");
  return bytes.toString("base64") === value ? bytes : undefined;
}

const DECIMAL = /^(?:0|[1-9][0-9]{0,15})$/;

function parseDecimal(frame: Uint8Array, min: number): number | undefined {
  if (frame.byteLength === 0 || frame.byteLength > MAX_DECIMAL_BYTES) return undefined;
  const text = asBuffer(frame).toString("latin1");
  if (!DECIMAL.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= min ? value : undefined;
}

function decimal(value: number, min: number): Buffer {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new F2bzError("INTERNAL", `sequence or count ${value} is invalid, expected an integer >= ${min}`);
  }
  return ascii(String(value));
}

function expiryJson(expiry: Expiry): string {
  return JSON.stringify({ jail: expiry.jail, ip: expiry.ip, id: expiry.id });
}

function ascii(text: string): Buffer {
  return Buffer.from(text, "latin1");
}

function ok<T>(message: T): Decoded<T> {
  return { ok: true, message };
}

function fail<T>(reason: RejectReason): Decoded<T> {
  return { ok: false, reason };
}
