import { createPublicKey, verify } from "node:crypto";
import test from "ava";
import { generateIdentity, nodeIdOf } from "../../src/keys/identity.js";
import { verifyDetached } from "../../src/protocol/ed25519.js";
import { encodePayload, PROTOCOL_VERSION, SIGN_DOMAIN } from "../../src/protocol/event.js";
import { signEvent, verifyEvent } from "../../src/protocol/signature.js";
import { flipBit } from "./helpers.js";

/**
 * The identity point as a public key (small order) with R = identity and S = 0: R = S·B − h·A holds
 * for every message. OpenSSL accepts it; verification must not, or anyone could sign as that key.
 */
const SMALL_ORDER_KEY = Buffer.concat([Buffer.from([1]), Buffer.alloc(31)]);
const ANY_MESSAGE_SIGNATURE = Buffer.concat([Buffer.from([1]), Buffer.alloc(63)]);

test("OpenSSL alone accepts a signature by a small-order key over any message (why libsodium sees a key first)", (t) => {
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: SMALL_ORDER_KEY.toString("base64url") },
    format: "jwk",
  });
  t.true(verify(null, Buffer.from("anything"), key, ANY_MESSAGE_SIGNATURE));
});

test("a forged event by a small-order key is rejected as signature, the first time and every time after", async (t) => {
  const origin = nodeIdOf(SMALL_ORDER_KEY);
  const now = Date.now();
  const payload = encodePayload({
    v: PROTOCOL_VERSION,
    key: SMALL_ORDER_KEY.toString("base64"),
    id: `${origin}:1`,
    origin,
    seq: 1,
    kind: "ban",
    jail: "sshd",
    ip: "203.0.113.9",
    time: now,
    expires: now + 3_600_000,
    name: "forged",
  });
  for (let i = 0; i < 3; i++) {
    t.deepEqual(await verifyEvent(payload, ANY_MESSAGE_SIGNATURE), { ok: false, reason: "signature" });
    t.false(await verifyDetached(ANY_MESSAGE_SIGNATURE, Buffer.from("x"), SMALL_ORDER_KEY));
  }
});

test("once a key is known, a tampered signature or payload is still rejected", async (t) => {
  const identity = await generateIdentity("web1");
  const fields = {
    kind: "ban",
    jail: "sshd",
    ip: "203.0.113.5",
    time: Date.now(),
    expires: Date.now() + 1,
  } as const;
  const first = await signEvent(identity, { ...fields, seq: 1 });
  const second = await signEvent(identity, { ...fields, seq: 2 });
  t.true((await verifyEvent(first.payload, first.signature)).ok, "the first signature by the key");
  t.true((await verifyEvent(second.payload, second.signature)).ok, "a later signature, key known");
  for (const index of [0, 31, 32, 63]) {
    t.deepEqual(await verifyEvent(second.payload, flipBit(second.signature, index)), {
      ok: false,
      reason: "signature",
    });
  }
  t.deepEqual(await verifyEvent(second.payload, first.signature), { ok: false, reason: "signature" });
  const message = Buffer.concat([SIGN_DOMAIN, second.payload]);
  t.true(await verifyDetached(second.signature, message, identity.signPublic));
  t.false(await verifyDetached(second.signature.subarray(0, 63), message, identity.signPublic));
  t.false(await verifyDetached(second.signature, message, identity.signPublic.subarray(0, 31)));
});
