import { createPublicKey, verify } from "node:crypto";
import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { generateIdentity, nodeIdOf } from "../../src/keys/identity.js";
import { encodePayload, SIGN_DOMAIN } from "../../src/protocol/event.js";
import { signEvent, verifyEvent } from "../../src/protocol/signature.js";
import { fieldsOf, fixedIdentity, flipBit, RFC8032_PUBLIC, signRaw } from "./helpers.js";

const FIELDS = {
  seq: 1,
  kind: "ban",
  jail: "sshd",
  ip: "203.0.113.5",
  time: 1_700_000_000_000,
  expires: 1_700_003_600_000,
} as const;

const KAT_PAYLOAD =
  '{"v":1,"key":"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=","id":"6e912e10df8226c5714446d5e98cbad2:1",' +
  '"origin":"6e912e10df8226c5714446d5e98cbad2","seq":1,"kind":"ban","jail":"sshd","ip":"203.0.113.5",' +
  '"time":1700000000000,"expires":1700003600000,"name":"kat"}';
const KAT_SIGNATURE =
  "fe52286bbc7625666080ec714cff7246033fc1e85124cdcc11f72eecae5387189e4929f2c472c8c8e9e986df21fdc620608be69297c923a72508761f98da8e00";

test("known answer: the RFC 8032 test key signs the expected bytes", async (t) => {
  const identity = await fixedIdentity();
  t.is(Buffer.from(identity.signPublic).toString("hex"), RFC8032_PUBLIC);
  const { event, payload, signature } = await signEvent(identity, FIELDS);
  t.is(payload.toString("utf8"), KAT_PAYLOAD);
  t.is(signature.toString("hex"), KAT_SIGNATURE);
  t.is(event.origin, "6e912e10df8226c5714446d5e98cbad2");
  t.deepEqual(await verifyEvent(Buffer.from(KAT_PAYLOAD), Buffer.from(KAT_SIGNATURE, "hex")), {
    ok: true,
    event,
  });
});

test("known answer: OpenSSL verifies the signature over the domain prefix and the payload", (t) => {
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(RFC8032_PUBLIC, "hex").toString("base64url") },
    format: "jwk",
  });
  const signed = Buffer.concat([Buffer.from("f2bz/event/v1\0"), Buffer.from(KAT_PAYLOAD)]);
  t.deepEqual(SIGN_DOMAIN, Buffer.from("f2bz/event/v1\0"));
  t.true(verify(null, signed, key, Buffer.from(KAT_SIGNATURE, "hex")));
  t.false(verify(null, Buffer.from(KAT_PAYLOAD), key, Buffer.from(KAT_SIGNATURE, "hex")));
});

test("a signed event round-trips with a fresh key", async (t) => {
  const identity = await generateIdentity("web1");
  const signed = await signEvent(identity, {
    ...FIELDS,
    kind: "unban",
    expires: FIELDS.time,
    ip: "2001:0DB8::0001",
  });
  t.is(signed.event.ip, "2001:db8::1");
  t.is(signed.event.origin, identity.nodeId);
  t.is(signed.event.id, `${identity.nodeId}:1`);
  t.is(signed.event.name, "web1");
  const result = await verifyEvent(signed.payload, signed.signature);
  t.deepEqual(result, { ok: true, event: signed.event });
  t.deepEqual(encodePayload(signed.event), signed.payload);
});

test("every single flipped bit in payload or signature is rejected", async (t) => {
  const identity = await generateIdentity("web1");
  const { payload, signature } = await signEvent(identity, FIELDS);
  const reasons = new Set<string>();
  for (let i = 0; i < payload.length; i++) {
    const result = await verifyEvent(flipBit(payload, i, i % 8), signature);
    t.false(result.ok);
    if (!result.ok) reasons.add(result.reason);
  }
  for (let i = 0; i < signature.length; i++) {
    t.deepEqual(await verifyEvent(payload, flipBit(signature, i, i % 8)), { ok: false, reason: "signature" });
  }
  // The fixed prefix is checked before the signature; everything else fails the signature.
  t.deepEqual([...reasons].sort(), ["schema", "signature", "version"]);
});

test("a flipped bit in the origin field fails the signature", async (t) => {
  const identity = await generateIdentity("web1");
  const { payload, signature } = await signEvent(identity, FIELDS);
  const at = payload.indexOf('"origin":"') + '"origin":"'.length;
  t.deepEqual(await verifyEvent(flipBit(payload, at), signature), { ok: false, reason: "signature" });
});

test("a ban re-labelled as an unban fails the signature", async (t) => {
  const identity = await generateIdentity("web1");
  const { payload, signature } = await signEvent(identity, { ...FIELDS, expires: FIELDS.time + 1 });
  const relabelled = Buffer.from(
    payload
      .toString()
      .replace('"kind":"ban"', '"kind":"unban"')
      .replace(/"expires":\d+/, `"expires":${FIELDS.time}`),
  );
  t.deepEqual(await verifyEvent(relabelled, signature), { ok: false, reason: "signature" });
});

test("a valid signature by another node claiming a different origin is rejected", async (t) => {
  const victim = await generateIdentity("victim");
  const forger = await generateIdentity("forger");
  // Forger's key and signature, victim's origin: the origin is derived from the key.
  const claimed = encodePayloadText(fieldsOf(forger, { origin: victim.nodeId, id: `${victim.nodeId}:5` }));
  t.deepEqual(await verifyEvent(claimed, await signRaw(forger, claimed)), {
    ok: false,
    reason: "origin-mismatch",
  });
  // Victim's key and origin, forger's signature.
  const borrowed = encodePayloadText(fieldsOf(victim));
  t.deepEqual(await verifyEvent(borrowed, await signRaw(forger, borrowed)), {
    ok: false,
    reason: "signature",
  });
});

test("wrong-length signatures and keys are rejected without throwing", async (t) => {
  const identity = await generateIdentity("web1");
  const { payload, signature } = await signEvent(identity, FIELDS);
  for (const length of [0, 1, 63, 65, 128]) {
    const bad = Buffer.alloc(length, 1);
    signature.copy(bad, 0, 0, Math.min(length, 64));
    t.deepEqual(await verifyEvent(payload, bad), { ok: false, reason: "signature" });
  }
  const key = Buffer.from(identity.signPublic);
  for (const wrong of [key.subarray(0, 31), Buffer.concat([key, Buffer.from([0])]), Buffer.alloc(0)]) {
    const text = encodePayloadText(fieldsOf(identity, { key: wrong.toString("base64") }));
    t.deepEqual(await verifyEvent(text, await signRaw(identity, text)), { ok: false, reason: "schema" });
  }
  const zeroKey = encodePayloadText(fieldsOf(identity, { key: Buffer.alloc(32).toString("base64") }));
  t.deepEqual(await verifyEvent(zeroKey, Buffer.alloc(64)), { ok: false, reason: "signature" });
  t.deepEqual(await verifyEvent("x" as unknown as Uint8Array, signature), { ok: false, reason: "frames" });
});

/** Malformed payloads, each validly signed: the parser must still refuse them with the right reason. */
const malformed: [title: string, build: (f: Record<string, unknown>) => string, reason: string][] = [
  ["an unknown key", (f) => JSON.stringify({ ...f, extra: 1 }), "schema"],
  ["a missing key", (f) => JSON.stringify({ ...f, name: undefined }), "schema"],
  ["a __proto__ key", (f) => `${JSON.stringify(f).slice(0, -1)},"__proto__":{"admin":true}}`, "schema"],
  ["a __proto__ key in place of name", (f) => JSON.stringify(f).replace('"name"', '"__proto__"'), "schema"],
  ["a constructor key", (f) => JSON.stringify(f).replace('"name"', '"constructor"'), "schema"],
  ["a prototype key", (f) => JSON.stringify(f).replace('"name"', '"prototype"'), "schema"],
  ["a duplicate key", (f) => `${JSON.stringify(f).slice(0, -1)},"kind":"unban"}`, "schema"],
  ["a nested object", (f) => JSON.stringify({ ...f, name: { first: "web1" } }), "schema"],
  ["a nested array", (f) => JSON.stringify({ ...f, ip: ["203.0.113.5"] }), "schema"],
  ["a non-safe seq", (f) => JSON.stringify(f).replace('"seq":5', '"seq":9007199254740993'), "schema"],
  ["a non-safe time", (f) => JSON.stringify({ ...f, time: 2 ** 53 }), "schema"],
  ["a fractional time", (f) => JSON.stringify({ ...f, time: 1.5 }), "schema"],
  ["an exponent", (f) => JSON.stringify(f).replace('"time":1700000000000', '"time":17e11'), "schema"],
  ["a string seq", (f) => JSON.stringify({ ...f, seq: "5" }), "schema"],
  ["seq zero", (f) => JSON.stringify({ ...f, seq: 0, id: `${f.origin}:0` }), "schema"],
  ["an id of another seq", (f) => JSON.stringify({ ...f, id: `${f.origin}:6` }), "schema"],
  ["whitespace", (f) => JSON.stringify(f).replace('"seq":5', '"seq": 5'), "schema"],
  [
    "reordered keys",
    (f) => JSON.stringify({ ...f, jail: undefined }).replace("}", `,"jail":"${f.jail}"}`),
    "schema",
  ],
  ["an escaped character", (f) => JSON.stringify(f).replace('"kind":"ban"', '"kind":"b\\u0061n"'), "schema"],
  ["version 2", (f) => JSON.stringify({ ...f, v: 2 }), "version"],
  ["a missing version", (f) => JSON.stringify({ ...f, v: undefined }), "schema"],
  ["an unknown kind", (f) => JSON.stringify({ ...f, kind: "flush" }), "schema"],
  ["an invalid jail", (f) => JSON.stringify({ ...f, jail: "x;rm" }), "jail"],
  ["an invalid ip", (f) => JSON.stringify({ ...f, ip: "010.1.1.1" }), "ip"],
  ["a non-canonical ip", (f) => JSON.stringify({ ...f, ip: "2001:DB8::1" }), "ip"],
  ["a mapped ip", (f) => JSON.stringify({ ...f, ip: "::ffff:203.0.113.5" }), "ip"],
  ["an ip with a zone", (f) => JSON.stringify({ ...f, ip: "fe80::1%eth0" }), "ip"],
  ["a cidr", (f) => JSON.stringify({ ...f, ip: "203.0.113.0/24" }), "cidr"],
  ["a ban that ends when it starts", (f) => JSON.stringify({ ...f, expires: f.time }), "schema"],
  ["an expiry before the time", (f) => JSON.stringify({ ...f, kind: "unban", expires: 1 }), "schema"],
  ["a control character in the name", (f) => JSON.stringify({ ...f, name: "web1\nFAIL" }), "schema"],
  ["a 65-character name", (f) => JSON.stringify({ ...f, name: "n".repeat(65) }), "schema"],
  ["an upper-case origin", (f) => JSON.stringify({ ...f, origin: String(f.origin).toUpperCase() }), "schema"],
];

for (const [title, build, reason] of malformed) {
  test(`a signed payload with ${title} is rejected as ${reason}`, async (t) => {
    const identity = await generateIdentity("web1");
    const payload = Buffer.from(build(fieldsOf(identity)), "utf8");
    const result = await verifyEvent(payload, await signRaw(identity, payload));
    t.deepEqual(result, { ok: false, reason });
    t.is(({} as Record<string, unknown>).admin, undefined);
  });
}

test("a signed payload that is not valid UTF-8 is rejected as encoding", async (t) => {
  const identity = await generateIdentity("web1");
  const text = JSON.stringify(fieldsOf(identity, { name: "web__" }));
  const payload = Buffer.from(text, "utf8");
  const at = payload.indexOf("web__") + 3;
  payload[at] = 0xc3; // a lead byte followed by "_": an invalid sequence
  t.deepEqual(await verifyEvent(payload, await signRaw(identity, payload)), {
    ok: false,
    reason: "encoding",
  });
});

test("oversize and empty payloads are rejected as size before any crypto", async (t) => {
  const identity = await generateIdentity("web1");
  const big = Buffer.from(JSON.stringify(fieldsOf(identity, { name: "n".repeat(1000) })));
  t.true(big.length > 1024);
  t.deepEqual(await verifyEvent(big, await signRaw(identity, big)), { ok: false, reason: "size" });
  t.deepEqual(await verifyEvent(Buffer.alloc(0), Buffer.alloc(64)), { ok: false, reason: "size" });
});

test("payloads not starting with the v1 key prefix are refused before the signature", async (t) => {
  const signature = Buffer.alloc(64);
  t.deepEqual(await verifyEvent(Buffer.from('{"v":2,"key":"x"}'), signature), {
    ok: false,
    reason: "version",
  });
  t.deepEqual(await verifyEvent(Buffer.from('{"key":"x","v":1}'), signature), {
    ok: false,
    reason: "schema",
  });
  t.deepEqual(await verifyEvent(Buffer.from('\ufeff{"v":1}'), signature), { ok: false, reason: "schema" });
  t.deepEqual(await verifyEvent(Buffer.from("[]"), signature), { ok: false, reason: "schema" });
});

test("a cidr passes only where the caller allows ranges", async (t) => {
  const identity = await generateIdentity("web1");
  const signed = await signEvent(identity, { ...FIELDS, ip: "203.0.113.0/24" }, { allowCidr: true });
  t.is(signed.event.ip, "203.0.113.0/24");
  t.deepEqual(await verifyEvent(signed.payload, signed.signature), { ok: false, reason: "cidr" });
  t.true((await verifyEvent(signed.payload, signed.signature, { allowCidr: true })).ok);
});

test("signEvent refuses fields that receivers would reject", async (t) => {
  const identity = await generateIdentity("web1");
  const cases = [
    { ...FIELDS, ip: "203.0.113.0/24" },
    { ...FIELDS, ip: "1.2.3" },
    { ...FIELDS, jail: "-x" },
    { ...FIELDS, seq: 0 },
    { ...FIELDS, expires: FIELDS.time },
    { ...FIELDS, time: Number.NaN },
  ];
  for (const fields of cases) {
    const error = await t.throwsAsync(signEvent(identity, fields), { instanceOf: F2bzError });
    t.is(error?.code, "MESSAGE_REJECTED");
  }
});

test("signEvent keeps the display name printable", async (t) => {
  const identity = { ...(await generateIdentity("")), name: "web\n1\u00e9" };
  const { event } = await signEvent(identity, FIELDS);
  t.is(event.name, "web?1?");
  const unnamed = { ...identity, name: "" };
  t.is((await signEvent(unnamed, FIELDS)).event.name, nodeIdOf(identity.signPublic).slice(0, 8));
});

function encodePayloadText(fields: Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify(fields), "utf8");
}
