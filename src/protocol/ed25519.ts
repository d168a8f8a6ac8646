import crypto from "node:crypto";
import { sodium } from "../keys/sodium.js";

/** RFC 8410 SubjectPublicKeyInfo prefix: followed by the raw 32-byte key, a DER Ed25519 key. */
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");

/**
 * Keys are taken from untrusted payloads: the cache is bounded, oldest out first, so a flood of
 * fresh keys costs speed (libsodium again), never memory. A fleet's monitors fit many times over.
 */
const MAX_CACHED_KEYS = 4096;
const verified = new Map<string, crypto.KeyObject>();

/**
 * Ed25519 verification, node:crypto (OpenSSL) for keys seen before, libsodium for a key's first
 * signature. OpenSSL accepts small-order public keys, for which a signature can verify for any
 * message; libsodium refuses them. So a key enters the cache only after libsodium accepted a
 * signature by it, and from then on the faster OpenSSL path checks the same thing. Never throws:
 * inputs of wrong length or form are false.
 */
export async function verifyDetached(
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
): Promise<boolean> {
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString("latin1");
  const keyObject = verified.get(id);
  try {
    if (keyObject) return crypto.verify(null, message, keyObject, signature);
    const na = await sodium();
    if (!na.crypto_sign_verify_detached(signature, message, publicKey)) return false;
    remember(id, publicKey);
    return true;
  } catch {
    return false;
  }
}

function remember(id: string, publicKey: Uint8Array): void {
  if (verified.size >= MAX_CACHED_KEYS) {
    const oldest = verified.keys().next().value;
    if (oldest !== undefined) verified.delete(oldest);
  }
  const key = crypto.createPublicKey({
    key: Buffer.concat([SPKI_ED25519, publicKey]),
    format: "der",
    type: "spki",
  });
  verified.set(id, key);
}
