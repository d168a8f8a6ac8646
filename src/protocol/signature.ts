import { F2bzError, quote } from "../errors.js";
import { nodeIdOf, type SecretIdentity } from "../keys/identity.js";
import { sodium } from "../keys/sodium.js";
import { parseAddress } from "../policy/address.js";
import { verifyDetached } from "./ed25519.js";
import {
  type BanEvent,
  type EventKind,
  encodePayload,
  extractKey,
  MAX_NAME_LENGTH,
  MAX_PAYLOAD_BYTES,
  PROTOCOL_VERSION,
  parseVerifiedPayload,
  SIGN_DOMAIN,
  SIGNATURE_BYTES,
} from "./event.js";
import type { RejectReason } from "./reasons.js";

export interface EventFields {
  seq: number;
  kind: EventKind;
  jail: string;
  /** Any accepted spelling; the signed event carries the canonical form. */
  ip: string;
  time: number;
  expires: number;
}

export interface SignedEvent {
  event: BanEvent;
  /** Fresh buffers: hand them to zeromq's send() once and never mutate them afterwards. */
  payload: Buffer;
  signature: Buffer;
}

export type VerifyResult = { ok: true; event: BanEvent } | { ok: false; reason: RejectReason };

/**
 * Signs an event as this node. Throws MESSAGE_REJECTED for fields that receivers would refuse:
 * the signed bytes are parsed back with the receivers' own parser, so what we sign, they accept.
 */
export async function signEvent(
  identity: SecretIdentity,
  fields: EventFields,
  options: { allowCidr?: boolean } = {},
): Promise<SignedEvent> {
  const address = parseAddress(fields.ip, options);
  if (!address.ok) {
    throw new F2bzError(
      "MESSAGE_REJECTED",
      `refusing to sign an event for ip ${quote(fields.ip)}: ${address.reason}`,
    );
  }
  const origin = nodeIdOf(identity.signPublic);
  const payload = encodePayload({
    v: PROTOCOL_VERSION,
    key: Buffer.from(identity.signPublic).toString("base64"),
    id: `${origin}:${fields.seq}`,
    origin,
    seq: fields.seq,
    kind: fields.kind,
    jail: fields.jail,
    ip: address.ip,
    time: fields.time,
    expires: fields.expires,
    name: displayName(identity.name, origin),
  });
  const parsed = parseVerifiedPayload(payload, options);
  if (!parsed.ok) {
    throw new F2bzError("MESSAGE_REJECTED", `refusing to sign an invalid event (${parsed.reason})`);
  }
  const na = await sodium();
  const signature = Buffer.from(na.crypto_sign_detached(signedBytes(payload), identity.signSecret));
  return { event: parsed.event, payload, signature };
}

/**
 * Checks an event as received, cheapest step first, each failing closed with a counted reason:
 * sizes, the key at its fixed offset, the Ed25519 signature over the exact received bytes (never a
 * re-serialization), and only then the strict parse and `origin == nodeIdOf(key)`. Time window,
 * seen-cache, authorization, never-ban and echo checks belong to the caller. Never throws on
 * hostile input: wrong lengths are checked first, and whatever the crypto throws is a rejection.
 */
export async function verifyEvent(
  payload: Uint8Array,
  signature: Uint8Array,
  options: { allowCidr?: boolean } = {},
): Promise<VerifyResult> {
  // Untrusted: frames straight off a socket.
  if (!(payload instanceof Uint8Array) || !(signature instanceof Uint8Array)) return reject("frames");
  if (payload.byteLength === 0 || payload.byteLength > MAX_PAYLOAD_BYTES) return reject("size");
  if (signature.byteLength !== SIGNATURE_BYTES) return reject("signature");
  const key = extractKey(payload);
  if (!key.ok) return key;
  if (!(await verifyDetached(signature, signedBytes(payload), key.key))) return reject("signature");
  return parseVerifiedPayload(payload, options);
}

function signedBytes(payload: Uint8Array): Buffer {
  return Buffer.concat([SIGN_DOMAIN, payload]);
}

/** Display only, but kept to printable ASCII so that it cannot forge log lines. */
function displayName(name: string, origin: string): string {
  const printable = name.replace(/[^\x20-\x7e]/g, "?").slice(0, MAX_NAME_LENGTH);
  return printable.length > 0 ? printable : origin.slice(0, 8);
}

function reject(reason: RejectReason): VerifyResult {
  return { ok: false, reason };
}
