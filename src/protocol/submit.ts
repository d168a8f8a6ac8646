import { ascii, type Decoded, fail, MAX_TOPIC_BYTES, ok } from "./codec.js";
import { isEventId } from "./event.js";
import { asBuffer, checkFrames, frameIs, TOPIC_EVENT } from "./frames.js";
import { isRejectReason, type RejectReason } from "./reasons.js";

/**
 * The publisher's reply to each event a monitor submits (frames.ts), on the REQ/REP pair:
 *
 *   ack   [TOPIC_ACK, eventId]
 *   nack  [TOPIC_NACK, eventId, reason]
 *
 * A nack with an empty id answers an event the publisher could not read at all. The decoder takes
 * untrusted frames and never throws.
 */
export const TOPIC_ACK = `${TOPIC_EVENT}/ack`;
export const TOPIC_NACK = `${TOPIC_EVENT}/nack`;

export type SubmitReply = { type: "ack"; id: string } | { type: "nack"; id: string; reason: RejectReason };

export function encodeAck(id: string): Buffer[] {
  return [ascii(TOPIC_ACK), ascii(id)];
}

export function encodeNack(id: string, reason: RejectReason): Buffer[] {
  return [ascii(TOPIC_NACK), ascii(id), ascii(reason)];
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
