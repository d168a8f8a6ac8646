import { F2bzError } from "../errors.js";
import { asBuffer } from "./frames.js";
import type { RejectReason } from "./reasons.js";

/**
 * What the feed, snapshot and submit codecs share: the result type of a decoder, ASCII and decimal
 * frames, and the one JSON parser for untrusted frame bodies. Decoders never throw.
 */
export type Decoded<T> = { ok: true; message: T } | { ok: false; reason: RejectReason };

export const MAX_TOPIC_BYTES = 32;
export const MAX_DECIMAL_BYTES = 16;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function parseJson(bytes: Uint8Array): Decoded<unknown> {
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

const DECIMAL = /^(?:0|[1-9][0-9]{0,15})$/;

export function parseDecimal(frame: Uint8Array, min: number): number | undefined {
  if (frame.byteLength === 0 || frame.byteLength > MAX_DECIMAL_BYTES) return undefined;
  const text = asBuffer(frame).toString("latin1");
  if (!DECIMAL.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= min ? value : undefined;
}

export function decimal(value: number, min: number): Buffer {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new F2bzError("INTERNAL", `sequence or count ${value} is invalid, expected an integer >= ${min}`);
  }
  return ascii(String(value));
}

export function ascii(text: string): Buffer {
  return Buffer.from(text, "latin1");
}

export function ok<T>(message: T): Decoded<T> {
  return { ok: true, message };
}

export function fail<T>(reason: RejectReason): Decoded<T> {
  return { ok: false, reason };
}
