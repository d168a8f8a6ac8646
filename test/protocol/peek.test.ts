import test from "ava";
import { generateIdentity } from "../../src/keys/identity.js";
import { peekEnvelope } from "../../src/protocol/peek.js";
import { signEvent } from "../../src/protocol/signature.js";
import { fieldsOf } from "./helpers.js";

test("the envelope read before verification matches the event signEvent produced", async (t) => {
  const identity = await generateIdentity("web1");
  for (const ip of ["203.0.113.5", "2001:db8:0:1:2:3:4:5", "203.0.113.0/24"]) {
    const { event, payload } = await signEvent(
      identity,
      {
        seq: 12,
        kind: "unban",
        jail: "nginx-http-auth",
        ip,
        time: 1_700_000_000_123,
        expires: 1_700_000_000_123,
      },
      { allowCidr: true },
    );
    const peeked = peekEnvelope(payload);
    t.true(peeked.ok);
    if (!peeked.ok) continue;
    t.is(peeked.envelope.id, event.id);
    t.is(peeked.envelope.origin, event.origin);
    t.is(peeked.envelope.time, event.time);
    t.deepEqual(Buffer.from(peeked.envelope.key), Buffer.from(identity.signPublic));
  }
});

test("peekEnvelope refuses a payload off the canonical layout", async (t) => {
  const identity = await generateIdentity("web1");
  const other = await generateIdentity("web2");
  const fields = fieldsOf(identity);
  const cases: [string, string][] = [
    [JSON.stringify({ ...fields, origin: other.nodeId }), "schema"], // id and origin disagree
    [JSON.stringify(fields).replace('"seq":5', '"seq": 5'), "schema"],
    [JSON.stringify({ ...fields, time: "1700000000000" }), "schema"],
    [JSON.stringify({ ...fields, v: 2 }), "version"],
  ];
  for (const [text, reason] of cases) t.deepEqual(peekEnvelope(Buffer.from(text)), { ok: false, reason });
});
