import crypto from "node:crypto";
import { generateIdentity } from "../src/keys/identity.js";
import { sodium } from "../src/keys/sodium.js";
import { extractKey, parseVerifiedPayload, SIGN_DOMAIN } from "../src/protocol/event.js";
import { type EventFields, signEvent, verifyEvent } from "../src/protocol/signature.js";
import { benchAddress } from "./lib/cluster.js";
import type { BenchResult, Row } from "./lib/result.js";
import { median, opsPerSecond, range } from "./lib/stats.js";

export interface CryptoOptions {
  rounds: number;
  /** How long each implementation runs per round. */
  msPerOp: number;
}

/** RFC 8410 DER prefixes: a libsodium seed or public key becomes a node:crypto KeyObject. */
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");

/**
 * (a) Signing and verifying one event. Baseline: node:crypto's Ed25519 over the very bytes f2bz
 * signs (domain prefix + payload), keys made once. f2bz's verifyEvent adds the size checks, the key
 * lookup at its fixed offset, libsodium (WASM) and the strict parse; signEvent adds encoding the
 * payload and parsing it back. Bare libsodium is shown too, to split crypto from f2bz's own work.
 */
export async function benchCrypto(options: CryptoOptions): Promise<BenchResult> {
  const started = Date.now();
  const na = await sodium();
  const identity = await generateIdentity("bench");
  const now = Date.now();
  let seq = 1;
  const fields = (): EventFields => ({
    seq: seq++,
    kind: "ban",
    jail: "sshd",
    ip: benchAddress(seq % 65_536),
    time: now,
    expires: now + 3_600_000,
  });
  const signed = await signEvent(identity, fields());
  const message = Buffer.concat([SIGN_DOMAIN, signed.payload]);
  const seed = Buffer.from(identity.signSecret.subarray(0, 32));
  const privateKey = crypto.createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, seed]),
    format: "der",
    type: "pkcs8",
  });
  const publicKey = crypto.createPublicKey({
    key: Buffer.concat([SPKI_ED25519, Buffer.from(identity.signPublic)]),
    format: "der",
    type: "spki",
  });
  // The baselines must do the same work: same bytes, same (deterministic) signature.
  if (!crypto.sign(null, message, privateKey).equals(signed.signature)) throw new Error("signatures differ");
  if (!crypto.verify(null, message, publicKey, signed.signature)) throw new Error("node:crypto rejects");
  if (!(await verifyEvent(signed.payload, signed.signature)).ok) throw new Error("verifyEvent rejects");

  const ops: Record<string, () => unknown> = {
    "verify: node:crypto (baseline)": () => crypto.verify(null, message, publicKey, signed.signature),
    "verify: libsodium-wrappers bare": () =>
      na.crypto_sign_verify_detached(signed.signature, message, identity.signPublic),
    "verify: f2bz verifyEvent": () => verifyEvent(signed.payload, signed.signature),
    "verify: f2bz verifyEvent, libsodium (before)": () => verifyEventSodium(signed.payload, signed.signature),
    "sign: node:crypto (baseline)": () => crypto.sign(null, message, privateKey),
    "sign: libsodium-wrappers bare": () => na.crypto_sign_detached(message, identity.signSecret),
    "sign: f2bz signEvent": () => signEvent(identity, fields()),
  };
  // verifyEvent as it was before issue 11: the same steps with libsodium's verify, in this run.
  const verifyEventSodium = (payload: Buffer, signature: Buffer) => {
    const key = extractKey(payload);
    if (!key.ok) throw new Error("no key");
    if (!na.crypto_sign_verify_detached(signature, Buffer.concat([SIGN_DOMAIN, payload]), key.key)) {
      throw new Error("libsodium rejects");
    }
    return parseVerifiedPayload(payload);
  };
  const names = Object.keys(ops);
  const rates = new Map<string, number[]>(names.map((n) => [n, []]));
  for (const name of names) await opsPerSecond(ops[name]!, 50); // warm-up: JIT, WASM tiers
  for (let round = 0; round < options.rounds; round++) {
    // Rotated so that no implementation always runs first (or right after the garbage of another).
    const order = names.map((_, i) => names[(i + round) % names.length]!);
    for (const name of order) rates.get(name)!.push(await opsPerSecond(ops[name]!, options.msPerOp));
  }

  const rows: Row[] = [];
  for (const name of names) {
    const kind = name.slice(0, name.indexOf(":"));
    const baseline = `${kind}: node:crypto (baseline)`;
    const own = rates.get(name)!;
    const base = rates.get(baseline)!;
    const costs = own.map((r, i) => base[i]! / r);
    rows.push({
      what: name,
      value: median(own),
      unit: "ops/s",
      ...(name === baseline ? {} : { baseline, cost: median(costs), costRange: range(costs) }),
    });
  }
  return {
    name: "crypto",
    title: `(a) Ed25519 per event, ${signed.payload.length}-byte payload, ${options.rounds} rounds × ${options.msPerOp} ms`,
    rows,
    notes: [
      "cost = baseline ops/s ÷ ops/s, per round (same round), median [min–max]",
      "verifyEvent = size checks + key at its offset + node:crypto verify (KeyObject cached per key, libsodium for a key's first signature) + strict JSON parse; signEvent = encode + parse back + sign",
      "verifyEvent, libsodium (before) = the same steps with libsodium-wrappers' verify, as before issue 11",
    ],
    seconds: (Date.now() - started) / 1000,
    rssMiB: process.memoryUsage.rss() / 2 ** 20,
  };
}
