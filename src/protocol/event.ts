import { timingSafeEqual } from "node:crypto";
import { nodeIdOf } from "../keys/identity.js";
import { parseAddress } from "../policy/address.js";
import { isValidJail } from "../policy/jail.js";
import type { RejectReason } from "./reasons.js";

/**
 * The payload of wire protocol v1: one flat JSON object, in exactly one encoding (the one
 * `encodePayload` writes: this key order, no whitespace, JSON.stringify's escapes):
 *
 *   {"v":1,"key":"<base64 Ed25519 public key>","id":"<origin>:<seq>","origin":"<32 hex>","seq":7,
 *    "kind":"ban","jail":"sshd","ip":"203.0.113.5","time":<ms>,"expires":<ms>,"name":"web1"}
 *
 * `key` comes second so that it sits at a fixed byte offset: the verifier takes the key from there
 * and checks the signature before any JSON parser sees the bytes (see `extractKey`). Requiring the
 * one canonical encoding after parsing rules out duplicate keys (JSON.parse keeps the last one,
 * other parsers the first), so every implementation reads the same event from the signed bytes.
 */
export type EventKind = "ban" | "unban";

export interface BanEvent {
  readonly v: 1;
  /** `<origin>:<seq>`: unique per event, the key of every seen-cache. */
  readonly id: string;
  /** The node id, derived from `key`; checked, never trusted. */
  readonly origin: string;
  /** Base64 of the origin's 32-byte Ed25519 public key. */
  readonly key: string;
  /** Per-origin sequence number, persisted by the origin across restarts; >= 1. */
  readonly seq: number;
  readonly kind: EventKind;
  readonly jail: string;
  /** Canonical address (see policy/address.ts); a CIDR only where the receiver allows them. */
  readonly ip: string;
  /** When the origin saw it, ms since the epoch. */
  readonly time: number;
  /** When the ban ends, ms since the epoch; for an unban, `time` itself. */
  readonly expires: number;
  /** The origin's display name: shown, never trusted. */
  readonly name: string;
}

export const PROTOCOL_VERSION = 1;
/** Domain separation: a v1 event signature can never be taken for a signature over anything else. */
export const SIGN_DOMAIN = Buffer.from("f2bz/event/v1\0", "latin1");
/** A real event is about 330 bytes; the cap bounds the work done on unauthenticated input. */
export const MAX_PAYLOAD_BYTES = 1024;
export const SIGNATURE_BYTES = 64;
export const PUBLIC_KEY_BYTES = 32;
export const MAX_NAME_LENGTH = 64;

const FIELDS = ["v", "key", "id", "origin", "seq", "kind", "jail", "ip", "time", "expires", "name"] as const;
const FIELD_SET = new Set<string>(FIELDS);
/** Prototype-pollution vectors, refused anywhere in a parsed document, not just where unknown. */
const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

const ORIGIN = /^[0-9a-f]{32}$/;
const NAME = /^[\x20-\x7e]{1,64}$/;
const BASE64_KEY = /^[A-Za-z0-9+/]{43}=$/;
export const EVENT_ID_PATTERN = /^[0-9a-f]{32}:[1-9][0-9]{0,15}$/;

export function isEventId(value: string): boolean {
  return (
    typeof value === "string" &&
    EVENT_ID_PATTERN.test(value) &&
    Number.isSafeInteger(Number(value.slice(value.indexOf(":") + 1)))
  );
}

/** The one encoding of an event; receivers refuse any other spelling of the same fields. */
export function encodePayload(event: BanEvent): Buffer {
  const ordered: Record<string, unknown> = {};
  for (const field of FIELDS) ordered[field] = event[field];
  return Buffer.from(JSON.stringify(ordered), "utf8");
}

const KEY_PREFIX = Buffer.from('{"v":1,"key":"', "latin1");
const VERSION_PREFIX = Buffer.from('{"v":', "latin1");
const KEY_TEXT_LENGTH = 44;

export type KeyResult = { ok: true; key: Uint8Array } | { ok: false; reason: RejectReason };

/**
 * Reads the origin's public key from its fixed place in untrusted, not yet verified bytes: a
 * prefix compare and a 44-character base64 decode, no parser. Using this key to verify is sound
 * because the key itself is inside the signed bytes and the origin must then equal nodeIdOf(key):
 * a forger can pick any key, but only events from authorized origins are acted upon.
 */
export function extractKey(payload: Uint8Array): KeyResult {
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  if (!startsWith(bytes, KEY_PREFIX)) {
    return { ok: false, reason: startsWith(bytes, VERSION_PREFIX) ? "version" : "schema" };
  }
  const end = KEY_PREFIX.length + KEY_TEXT_LENGTH;
  if (bytes.length <= end || bytes[end] !== 0x22 /* " */) return { ok: false, reason: "schema" };
  const text = bytes.toString("latin1", KEY_PREFIX.length, end);
  const key = decodeKey(text);
  return key ? { ok: true, key } : { ok: false, reason: "schema" };
}

/** Strict base64 of exactly 32 bytes; Buffer.from alone would skip junk characters silently. */
function decodeKey(text: string): Uint8Array | undefined {
  if (!BASE64_KEY.test(text)) return undefined;
  const key = Buffer.from(text, "base64");
  if (key.length !== PUBLIC_KEY_BYTES || key.toString("base64") !== text) return undefined;
  return new Uint8Array(key);
}

function startsWith(bytes: Buffer, prefix: Buffer): boolean {
  return bytes.length >= prefix.length && bytes.subarray(0, prefix.length).equals(prefix);
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export type PayloadResult = { ok: true; event: BanEvent } | { ok: false; reason: RejectReason };

/**
 * Parses payload bytes into an event, strictly. Called only after the signature has been checked,
 * but still hostile input: a signing origin may be compromised, and receivers must all agree on
 * what the bytes mean. Never throws.
 */
export function parseVerifiedPayload(
  payload: Uint8Array,
  options: { allowCidr?: boolean } = {},
): PayloadResult {
  if (payload.byteLength === 0 || payload.byteLength > MAX_PAYLOAD_BYTES) return reject("size");
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return reject("encoding");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text, refuseUnsafe);
  } catch {
    return reject("schema");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return reject("schema");
  const keys = Object.keys(raw);
  if (keys.length !== FIELDS.length || !keys.every((k) => FIELD_SET.has(k))) return reject("schema");
  const r = raw as Record<string, unknown>;

  if (r.v !== PROTOCOL_VERSION) return reject("version");
  const { key, id, origin, seq, kind, jail, ip, time, expires, name } = r;
  if (typeof key !== "string" || decodeKey(key) === undefined) return reject("schema");
  if (typeof origin !== "string" || !ORIGIN.test(origin)) return reject("schema");
  if (!isCount(seq) || seq < 1) return reject("schema");
  if (id !== `${origin}:${seq}`) return reject("schema");
  if (kind !== "ban" && kind !== "unban") return reject("schema");
  if (typeof jail !== "string" || !isValidJail(jail)) return reject("jail");
  if (typeof ip !== "string") return reject("ip");
  if (ip.includes("/") && !options.allowCidr) return reject("cidr");
  const address = parseAddress(ip, { allowCidr: options.allowCidr ?? false });
  if (!address.ok || address.ip !== ip) return reject("ip");
  if (!isCount(time) || time < 1) return reject("schema");
  // An unban ends now; a ban must end after it starts.
  if (!isCount(expires) || expires < time || (kind === "ban" && expires === time)) return reject("schema");
  if (typeof name !== "string" || !NAME.test(name)) return reject("schema");

  // A fresh object with exactly these fields: nothing of the parsed one (or its prototype) leaks.
  const event: BanEvent = { v: 1, key, id, origin, seq, kind, jail, ip, time, expires, name };
  if (!encodePayload(event).equals(payload)) return reject("schema");
  // The origin is derived from the key, never taken from the message.
  if (!sameText(origin, nodeIdOf(decodeKey(key)!))) return reject("origin-mismatch");
  return { ok: true, event };
}

function refuseUnsafe(key: string, value: unknown): unknown {
  if (FORBIDDEN_KEYS.has(key)) throw new SyntaxError("forbidden key");
  // The reviver runs bottom-up; any object below the root is nesting.
  if (key !== "" && typeof value === "object" && value !== null) throw new SyntaxError("nested value");
  return value;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value);
}

/** Constant-time equality for identifiers derived from keys. */
function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

function reject(reason: RejectReason): PayloadResult {
  return { ok: false, reason };
}
