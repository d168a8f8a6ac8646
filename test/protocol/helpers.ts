import { nodeIdOf, type SecretIdentity } from "../../src/keys/identity.js";
import { sodium } from "../../src/keys/sodium.js";
import { SIGN_DOMAIN } from "../../src/protocol/event.js";

/** RFC 8032 §7.1 TEST 1: a fixed Ed25519 key for known-answer vectors. */
export const RFC8032_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
export const RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

export async function fixedIdentity(name = "kat"): Promise<SecretIdentity> {
  const na = await sodium();
  const seed = Buffer.from(RFC8032_SEED, "hex");
  const sign = na.crypto_sign_seed_keypair(seed);
  const box = na.crypto_box_seed_keypair(seed);
  return {
    name,
    nodeId: nodeIdOf(sign.publicKey),
    curvePublic: box.publicKey,
    curveSecret: box.privateKey,
    signPublic: sign.publicKey,
    signSecret: sign.privateKey,
  };
}

/** Signs arbitrary bytes as the protocol does: for payloads only a buggy or hostile origin would send. */
export async function signRaw(identity: SecretIdentity, payload: Uint8Array): Promise<Buffer> {
  const na = await sodium();
  return Buffer.from(na.crypto_sign_detached(Buffer.concat([SIGN_DOMAIN, payload]), identity.signSecret));
}

/** A payload object in the canonical key order, for building malformed variants. */
export function fieldsOf(
  identity: SecretIdentity,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const origin = identity.nodeId;
  return {
    v: 1,
    key: Buffer.from(identity.signPublic).toString("base64"),
    id: `${origin}:5`,
    origin,
    seq: 5,
    kind: "ban",
    jail: "sshd",
    ip: "203.0.113.5",
    time: 1_700_000_000_000,
    expires: 1_700_003_600_000,
    name: identity.name,
    ...overrides,
  };
}

export function flipBit(bytes: Uint8Array, index: number, bit = 0): Buffer {
  const copy = Buffer.from(bytes);
  copy[index] = copy[index]! ^ (1 << bit);
  return copy;
}
