import { extractKey } from "./event.js";
import type { RejectReason } from "./reasons.js";

/**
 * The id and time of an event read from its canonical layout in untrusted, not yet verified bytes,
 * by one anchored, bounded pattern (no JSON parser). It lets a receiver run its cheapest checks —
 * time window, seen-cache, authorized origin — before the signature; nothing read here is acted
 * on unless the signature and the strict parse that follow agree (the encoding is canonical).
 */
export interface Envelope {
  key: Uint8Array;
  id: string;
  origin: string;
  time: number;
}

const LAYOUT =
  /^\{"v":1,"key":"[A-Za-z0-9+/]{43}=","id":"(([0-9a-f]{32}):[1-9][0-9]{0,15})","origin":"\2","seq":[1-9][0-9]{0,15},"kind":"(?:ban|unban)","jail":"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}","ip":"[0-9A-Fa-f.:/]{2,49}","time":([1-9][0-9]{0,15}),/;

export function peekEnvelope(
  payload: Uint8Array,
): { ok: true; envelope: Envelope } | { ok: false; reason: RejectReason } {
  const key = extractKey(payload);
  if (!key.ok) return key;
  const head = Buffer.from(payload.buffer, payload.byteOffset, Math.min(payload.byteLength, 400)).toString(
    "latin1",
  );
  const match = LAYOUT.exec(head);
  if (!match) return { ok: false, reason: "schema" };
  const time = Number(match[3]);
  if (!Number.isSafeInteger(time)) return { ok: false, reason: "schema" };
  return { ok: true, envelope: { key: key.key, id: match[1]!, origin: match[2]!, time } };
}
