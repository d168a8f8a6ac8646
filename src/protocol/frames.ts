import { MAX_PAYLOAD_BYTES, SIGNATURE_BYTES } from "./event.js";
import type { RejectReason } from "./reasons.js";

/**
 * The multipart message a monitor submits to a publisher: `[topic, payload, signature]`. The
 * publisher forwards payload and signature byte for byte, so subscribers verify the origin's
 * signature end to end. libzmq's maxMessageSize caps each frame, not the frame count: both are
 * checked here, before any parsing or crypto.
 */
export const TOPIC_EVENT = "f2bz/1";
export const EVENT_FRAME_COUNT = 3;
/** The largest frame of an event message; a socket's maxMessageSize must be at least this. */
export const MAX_EVENT_FRAME_BYTES = MAX_PAYLOAD_BYTES;

/** Untrusted frames: the exact count, then every frame within `maxFrameBytes`. */
export function checkFrames(
  frames: readonly Uint8Array[],
  expectedCount: number,
  maxFrameBytes: number,
): RejectReason | undefined {
  if (!Array.isArray(frames) || frames.length !== expectedCount) return "frames";
  for (const frame of frames) {
    if (!(frame instanceof Uint8Array)) return "frames";
    if (frame.byteLength > maxFrameBytes) return "size";
  }
  return undefined;
}

/** Equality of a received frame with an ASCII constant such as a topic. */
export function frameIs(frame: Uint8Array, text: string): boolean {
  return frame.byteLength === text.length && asBuffer(frame).toString("latin1") === text;
}

/** Fresh buffers for zeromq's send(): never reuse or mutate them afterwards. */
export function encodeEventFrames(payload: Uint8Array, signature: Uint8Array): Buffer[] {
  return [Buffer.from(TOPIC_EVENT, "latin1"), Buffer.from(payload), Buffer.from(signature)];
}

export type EventFramesResult =
  | { ok: true; payload: Buffer; signature: Buffer }
  | { ok: false; reason: RejectReason };

/** Splits a submitted event message; verification (verifyEvent) is the next step. Never throws. */
export function decodeEventFrames(frames: readonly Uint8Array[]): EventFramesResult {
  const bad = checkFrames(frames, EVENT_FRAME_COUNT, MAX_EVENT_FRAME_BYTES);
  if (bad) return { ok: false, reason: bad };
  const [topic, payload, signature] = frames as [Uint8Array, Uint8Array, Uint8Array];
  if (!frameIs(topic, TOPIC_EVENT)) return { ok: false, reason: "frames" };
  if (payload.byteLength === 0) return { ok: false, reason: "size" };
  if (signature.byteLength !== SIGNATURE_BYTES) return { ok: false, reason: "signature" };
  return { ok: true, payload: asBuffer(payload), signature: asBuffer(signature) };
}

/** A view, not a copy: the frames are only read. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
