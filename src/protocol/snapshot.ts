import { F2bzError } from "../errors.js";
import {
  ascii,
  type Decoded,
  decimal,
  fail,
  MAX_DECIMAL_BYTES,
  MAX_TOPIC_BYTES,
  ok,
  parseDecimal,
  parseJson,
} from "./codec.js";
import { MAX_PAYLOAD_BYTES, SIGNATURE_BYTES } from "./event.js";
import { checkFrames, frameIs, TOPIC_EVENT } from "./frames.js";

/**
 * The snapshot, the active set a subscriber fetches when it (re)joins or sees a gap in the feed
 * (the Clone pattern, ZeroMQ Guide ch. 5), on the publisher's ROUTER:
 *
 *   request  [TOPIC_SNAPSHOT]                                      DEALER → ROUTER
 *   credit   [TOPIC_CREDIT]                                        DEALER → ROUTER
 *   chunk    [TOPIC_CHUNK, [[payloadBase64, signatureBase64], …]]  ROUTER → DEALER, ≤ 200
 *   end      [TOPIC_END, publisherSeq, count]                      ROUTER → DEALER
 *   busy     [TOPIC_BUSY, retryAfterMs]                            ROUTER → DEALER
 *
 * A snapshot is streamed with credit-based flow control (ZeroMQ Guide ch. 7): a request grants
 * SNAPSHOT_WINDOW chunks, and each credit message one more, so neither side ever holds more than a
 * window of a large active set; the end marker needs no credit. A publisher that will not start a
 * snapshot now (one already in flight for this peer, or too many for all) says `busy` instead of
 * staying silent, and the subscriber asks again after `retryAfterMs`.
 *
 * Entries are verified like live events. Decoders take untrusted frames (on a ROUTER, without the
 * routing id), check count and sizes first, and return a result; they never throw.
 */
export const TOPIC_SNAPSHOT = `${TOPIC_EVENT}/snapshot`;
export const TOPIC_CHUNK = `${TOPIC_EVENT}/chunk`;
export const TOPIC_END = `${TOPIC_EVENT}/end`;
export const TOPIC_CREDIT = `${TOPIC_EVENT}/credit`;
export const TOPIC_BUSY = `${TOPIC_EVENT}/busy`;

export const MAX_CHUNK_ENTRIES = 200;
/** Chunks a snapshot request grants before the first credit: 8 × ≤ 290 KB in flight per stream. */
export const SNAPSHOT_WINDOW = 8;
const base64Length = (bytes: number): number => Math.ceil(bytes / 3) * 4;
/** `["<payload>","<signature>"],` at their largest. */
const MAX_ENTRY_BYTES = base64Length(MAX_PAYLOAD_BYTES) + base64Length(SIGNATURE_BYTES) + 8;
/** The largest frame a snapshot reply carries (about 290 KB): the DEALER's maxMessageSize. */
export const MAX_CHUNK_BYTES = 2 + MAX_CHUNK_ENTRIES * MAX_ENTRY_BYTES;

export interface SnapshotEntry {
  payload: Buffer;
  signature: Buffer;
}

export type SnapshotRequest = { type: "snapshot" } | { type: "credit" };

export type SnapshotReply =
  | { type: "chunk"; entries: SnapshotEntry[] }
  | { type: "end"; seq: number; count: number }
  | { type: "busy"; retryAfterMs: number };

// Encoders build fresh buffers: zeromq sends large buffers without copying, so never reuse them.

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
