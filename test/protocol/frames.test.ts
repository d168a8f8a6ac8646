import test from "ava";
import { generateIdentity } from "../../src/keys/identity.js";
import {
  checkFrames,
  decodeEventFrames,
  EVENT_FRAME_COUNT,
  encodeEventFrames,
  TOPIC_EVENT,
} from "../../src/protocol/frames.js";
import { signEvent, verifyEvent } from "../../src/protocol/signature.js";

test("checkFrames checks the count, then every frame's size", (t) => {
  const frame = (n: number) => Buffer.alloc(n);
  t.is(checkFrames([frame(1), frame(10), frame(64)], 3, 64), undefined);
  t.is(checkFrames([frame(1), frame(10)], 3, 64), "frames");
  t.is(checkFrames([frame(1), frame(10), frame(1), frame(1)], 3, 64), "frames");
  t.is(checkFrames([], 3, 64), "frames");
  t.is(checkFrames([frame(1), frame(65), frame(1)], 3, 64), "size");
  t.is(checkFrames([frame(1), "x" as unknown as Buffer, frame(1)], 3, 64), "frames");
  t.is(checkFrames("abc" as unknown as Buffer[], 3, 64), "frames");
});

test("an event travels as [topic, payload, signature], byte for byte", async (t) => {
  const identity = await generateIdentity("web1");
  const signed = await signEvent(identity, {
    seq: 3,
    kind: "ban",
    jail: "sshd",
    ip: "203.0.113.5",
    time: 1_700_000_000_000,
    expires: 1_700_000_600_000,
  });
  const frames = encodeEventFrames(signed.payload, signed.signature);
  t.is(frames.length, EVENT_FRAME_COUNT);
  t.is(frames[0]!.toString(), TOPIC_EVENT);
  t.not(frames[1], signed.payload); // a copy: the caller's buffer is never handed to send()
  const decoded = decodeEventFrames(frames);
  t.true(decoded.ok);
  if (!decoded.ok) return;
  t.deepEqual(decoded.payload, signed.payload);
  t.deepEqual(await verifyEvent(decoded.payload, decoded.signature), { ok: true, event: signed.event });
});

test("decodeEventFrames refuses wrong topics, counts and sizes", (t) => {
  const sig = Buffer.alloc(64);
  const payload = Buffer.from("{}");
  t.deepEqual(decodeEventFrames([Buffer.from("f2bz/2"), payload, sig]), { ok: false, reason: "frames" });
  t.deepEqual(decodeEventFrames([Buffer.from("f2bz/1x"), payload, sig]), { ok: false, reason: "frames" });
  t.deepEqual(decodeEventFrames([Buffer.from(TOPIC_EVENT), payload]), { ok: false, reason: "frames" });
  t.deepEqual(decodeEventFrames([Buffer.from(TOPIC_EVENT), Buffer.alloc(1025), sig]), {
    ok: false,
    reason: "size",
  });
  t.deepEqual(decodeEventFrames([Buffer.from(TOPIC_EVENT), Buffer.alloc(0), sig]), {
    ok: false,
    reason: "size",
  });
  t.deepEqual(decodeEventFrames([Buffer.from(TOPIC_EVENT), payload, Buffer.alloc(63)]), {
    ok: false,
    reason: "signature",
  });
});
