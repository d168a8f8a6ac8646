import test from "ava";
import { F2bzError } from "../../src/errors.js";
import {
  decodeFeed,
  encodeExpire,
  encodeHeartbeat,
  encodeUpdate,
  TOPIC_EXPIRE,
  TOPIC_UPDATE,
} from "../../src/protocol/feed.js";
import {
  decodeSnapshotReply,
  decodeSnapshotRequest,
  encodeBusy,
  encodeChunk,
  encodeCredit,
  encodeEnd,
  encodeSnapshot,
  encodeSnapshotRequest,
  MAX_CHUNK_BYTES,
  MAX_CHUNK_ENTRIES,
  TOPIC_BUSY,
  TOPIC_CHUNK,
  TOPIC_END,
} from "../../src/protocol/snapshot.js";
import { decodeSubmitReply, encodeAck, encodeNack, TOPIC_NACK } from "../../src/protocol/submit.js";

const ID = "0123456789abcdef0123456789abcdef:42";
const b = (text: string) => Buffer.from(text, "latin1");
const payload = b('{"v":1}');
const signature = Buffer.alloc(64, 7);

test("the wire form of every feed message is as documented", (t) => {
  const text = (frames: Buffer[]) => frames.map((f) => f.toString("latin1"));
  t.deepEqual(text(encodeUpdate(payload, signature, 9)), [
    "f2bz/1",
    '{"v":1}',
    signature.toString("latin1"),
    "9",
  ]);
  t.deepEqual(text(encodeExpire({ jail: "sshd", ip: "203.0.113.5", id: ID }, 10)), [
    "f2bz/1/expire",
    `{"jail":"sshd","ip":"203.0.113.5","id":"${ID}"}`,
    "",
    "10",
  ]);
  t.deepEqual(text(encodeHeartbeat(0)), ["f2bz/1/heartbeat", "0"]);
  t.deepEqual(text(encodeSnapshotRequest()), ["f2bz/1/snapshot"]);
  t.deepEqual(text(encodeChunk([{ payload, signature }])), [
    "f2bz/1/chunk",
    `[["${payload.toString("base64")}","${signature.toString("base64")}"]]`,
  ]);
  t.deepEqual(text(encodeEnd(0, 0)), ["f2bz/1/end", "0", "0"]);
  t.deepEqual(text(encodeAck(ID)), ["f2bz/1/ack", ID]);
  t.deepEqual(text(encodeNack(ID, "never-ban")), ["f2bz/1/nack", ID, "never-ban"]);
});

test("updates and expiries round-trip", (t) => {
  t.deepEqual(decodeFeed(encodeUpdate(payload, signature, 9)), {
    ok: true,
    message: { type: "update", payload, signature, seq: 9 },
  });
  const expiry = { jail: "sshd", ip: "2001:db8::/64", id: ID };
  t.deepEqual(decodeFeed(encodeExpire(expiry, 10)), {
    ok: true,
    message: { type: "expire", seq: 10, ...expiry },
  });
  t.deepEqual(decodeFeed(encodeHeartbeat(10)), { ok: true, message: { type: "heartbeat", seq: 10 } });
});

const badFeed: [title: string, frames: Buffer[], reason: string][] = [
  ["too few frames", [b(TOPIC_UPDATE), payload, signature], "frames"],
  ["no frames", [], "frames"],
  ["a heartbeat with an extra frame", [b("f2bz/1/heartbeat"), b("1"), b("")], "frames"],
  ["a heartbeat with a bad seq", [b("f2bz/1/heartbeat"), b("-1")], "schema"],
  ["a heartbeat with an oversize seq", [b("f2bz/1/heartbeat"), b("1".repeat(17))], "size"],
  ["an unknown topic", [b("f2bz/1/other"), payload, signature, b("1")], "frames"],
  ["an oversize payload", [b(TOPIC_UPDATE), Buffer.alloc(1025), signature, b("1")], "size"],
  ["an empty payload", [b(TOPIC_UPDATE), Buffer.alloc(0), signature, b("1")], "size"],
  ["a short signature", [b(TOPIC_UPDATE), payload, Buffer.alloc(63), b("1")], "signature"],
  ["seq zero", [b(TOPIC_UPDATE), payload, signature, b("0")], "schema"],
  ["a leading zero", [b(TOPIC_UPDATE), payload, signature, b("01")], "schema"],
  ["a signed seq", [b(TOPIC_UPDATE), payload, signature, b("+1")], "schema"],
  ["a non-safe seq", [b(TOPIC_UPDATE), payload, signature, b("9007199254740993")], "schema"],
  ["a long seq", [b(TOPIC_UPDATE), payload, signature, b("12345678901234567")], "schema"],
  ["a seq with a newline", [b(TOPIC_UPDATE), payload, signature, b("1\n")], "schema"],
  ["an expiry with a body in frame 3", [b(TOPIC_EXPIRE), b("{}"), b("x"), b("1")], "schema"],
  ["an expiry that is not JSON", [b(TOPIC_EXPIRE), b("{"), b(""), b("1")], "schema"],
  [
    "an expiry that is not UTF-8",
    [b(TOPIC_EXPIRE), Buffer.from([0x7b, 0xff, 0x7d]), b(""), b("1")],
    "encoding",
  ],
  [
    "an expiry with an unknown key",
    [b(TOPIC_EXPIRE), b(`{"jail":"sshd","ip":"203.0.113.5","id":"${ID}","x":1}`), b(""), b("1")],
    "schema",
  ],
  [
    "an expiry with a __proto__ key",
    [b(TOPIC_EXPIRE), b(`{"jail":"sshd","__proto__":{"a":1},"id":"${ID}"}`), b(""), b("1")],
    "schema",
  ],
  [
    "an expiry with a duplicate key",
    [b(TOPIC_EXPIRE), b(`{"jail":"sshd","ip":"203.0.113.5","id":"${ID}","id":"${ID}"}`), b(""), b("1")],
    "schema",
  ],
  [
    "an expiry with a bad jail",
    [b(TOPIC_EXPIRE), b(`{"jail":"-x","ip":"203.0.113.5","id":"${ID}"}`), b(""), b("1")],
    "jail",
  ],
  [
    "an expiry with a non-canonical ip",
    [b(TOPIC_EXPIRE), b(`{"jail":"sshd","ip":"2001:DB8::1","id":"${ID}"}`), b(""), b("1")],
    "ip",
  ],
  [
    "an expiry with a bad id",
    [b(TOPIC_EXPIRE), b('{"jail":"sshd","ip":"203.0.113.5","id":"web1:1"}'), b(""), b("1")],
    "schema",
  ],
];

for (const [title, frames, reason] of badFeed) {
  test(`decodeFeed refuses ${title}`, (t) => {
    t.deepEqual(decodeFeed(frames), { ok: false, reason });
  });
}

test("snapshot requests are exactly one topic frame", (t) => {
  t.deepEqual(decodeSnapshotRequest(encodeSnapshotRequest()), { ok: true, message: { type: "snapshot" } });
  t.deepEqual(decodeSnapshotRequest([b("f2bz/1/snapshot"), b("")]), { ok: false, reason: "frames" });
  t.deepEqual(decodeSnapshotRequest([b("f2bz/1/snapshoT")]), { ok: false, reason: "frames" });
  t.deepEqual(decodeSnapshotRequest([Buffer.alloc(4096)]), { ok: false, reason: "size" });
});

test("snapshot credit is one topic frame; busy carries a retry delay", (t) => {
  t.deepEqual(decodeSnapshotRequest(encodeCredit()), { ok: true, message: { type: "credit" } });
  t.deepEqual(decodeSnapshotRequest([b("f2bz/1/credit"), b("1")]), { ok: false, reason: "frames" });
  t.deepEqual(decodeSnapshotReply(encodeBusy(1500)), {
    ok: true,
    message: { type: "busy", retryAfterMs: 1500 },
  });
  t.deepEqual(decodeSnapshotReply([b(TOPIC_BUSY), b("-1")]), { ok: false, reason: "schema" });
  t.deepEqual(decodeSnapshotReply([b(TOPIC_BUSY), b("1e3")]), { ok: false, reason: "schema" });
  t.deepEqual(decodeSnapshotReply([b(TOPIC_BUSY), Buffer.alloc(17, 0x31)]), { ok: false, reason: "size" });
  t.deepEqual(decodeSnapshotReply([b(TOPIC_BUSY)]), { ok: false, reason: "frames" });
  t.throws(() => encodeBusy(-1), { instanceOf: F2bzError });
});

test("a snapshot is split into chunks of at most 200 entries and an end marker", (t) => {
  const entries = Array.from({ length: 401 }, (_, i) => ({ payload: b(`{"n":${i}}`), signature }));
  const messages = encodeSnapshot(entries, 77);
  t.is(messages.length, 4);
  const decoded = messages.map((m) => decodeSnapshotReply(m));
  const received = decoded.flatMap((d) => (d.ok && d.message.type === "chunk" ? d.message.entries : []));
  t.deepEqual(received, entries);
  t.deepEqual(decoded.at(-1), { ok: true, message: { type: "end", seq: 77, count: 401 } });
  t.deepEqual(
    encodeSnapshot([], 5).map((m) => decodeSnapshotReply(m)),
    [{ ok: true, message: { type: "end", seq: 5, count: 0 } }],
  );
});

test("a chunk of the largest entries fits MAX_CHUNK_BYTES", (t) => {
  const entries = Array.from({ length: MAX_CHUNK_ENTRIES }, () => ({
    payload: Buffer.alloc(1024, 0xff),
    signature,
  }));
  const [, body] = encodeChunk(entries);
  t.true(body!.length <= MAX_CHUNK_BYTES);
  t.true(decodeSnapshotReply(encodeChunk(entries)).ok);
});

test("encoders refuse what decoders would refuse", (t) => {
  t.throws(() => encodeChunk([]), { instanceOf: F2bzError });
  t.throws(() => encodeChunk(Array.from({ length: 201 }, () => ({ payload, signature }))), {
    instanceOf: F2bzError,
  });
  t.throws(() => encodeUpdate(payload, signature, 0), { instanceOf: F2bzError });
  t.throws(() => encodeEnd(-1, 0), { instanceOf: F2bzError });
  t.throws(() => encodeEnd(1, 1.5), { instanceOf: F2bzError });
});

const entry = (p: string, s: string) => JSON.stringify([[p, s]]);
const p64 = payload.toString("base64");
const s64 = signature.toString("base64");
const badReplies: [title: string, frames: Buffer[], reason: string][] = [
  ["an empty chunk", [b(TOPIC_CHUNK), b("[]")], "schema"],
  ["a chunk of 201 entries", [b(TOPIC_CHUNK), b(JSON.stringify(Array(201).fill([p64, s64])))], "schema"],
  ["a chunk that is an object", [b(TOPIC_CHUNK), b(`{"a":[["${p64}","${s64}"]]}`)], "schema"],
  ["a chunk entry with an object", [b(TOPIC_CHUNK), b(`[[{"__proto__":1},"${s64}"]]`)], "schema"],
  ["a chunk entry of three strings", [b(TOPIC_CHUNK), b(JSON.stringify([[p64, s64, s64]]))], "schema"],
  ["invalid base64", [b(TOPIC_CHUNK), b(entry(`${p64}!`, s64))], "schema"],
  ["non-canonical base64", [b(TOPIC_CHUNK), b(entry("QR==", s64))], "schema"],
  ["base64 with whitespace", [b(TOPIC_CHUNK), b(entry(`${p64.slice(0, 4)} ${p64.slice(4)}`, s64))], "schema"],
  ["an empty payload", [b(TOPIC_CHUNK), b(entry("", s64))], "size"],
  ["an oversize payload", [b(TOPIC_CHUNK), b(entry(Buffer.alloc(1025).toString("base64"), s64))], "size"],
  ["a short signature", [b(TOPIC_CHUNK), b(entry(p64, Buffer.alloc(63).toString("base64")))], "signature"],
  ["an oversize chunk frame", [b(TOPIC_CHUNK), Buffer.alloc(MAX_CHUNK_BYTES + 1, 0x20)], "size"],
  ["a chunk with an extra frame", [b(TOPIC_CHUNK), b(entry(p64, s64)), b("")], "frames"],
  ["an end without count", [b(TOPIC_END), b("1")], "frames"],
  ["an end with a negative count", [b(TOPIC_END), b("1"), b("-1")], "schema"],
  ["an end with a hex seq", [b(TOPIC_END), b("0x10"), b("1")], "schema"],
  ["an update on the snapshot socket", [b(TOPIC_UPDATE), payload, signature, b("1")], "frames"],
];

for (const [title, frames, reason] of badReplies) {
  test(`decodeSnapshotReply refuses ${title}`, (t) => {
    t.deepEqual(decodeSnapshotReply(frames), { ok: false, reason });
  });
}

test("submit replies: ack and nack round-trip; anything else is refused", (t) => {
  t.deepEqual(decodeSubmitReply(encodeAck(ID)), { ok: true, message: { type: "ack", id: ID } });
  t.deepEqual(decodeSubmitReply(encodeNack(ID, "rate-limited")), {
    ok: true,
    message: { type: "nack", id: ID, reason: "rate-limited" },
  });
  t.deepEqual(decodeSubmitReply([b(TOPIC_NACK), b(ID), b("no-such-reason")]), {
    ok: false,
    reason: "schema",
  });
  t.deepEqual(decodeSubmitReply([b("f2bz/1/ack"), b("web1:1")]), { ok: false, reason: "schema" });
  t.deepEqual(decodeSubmitReply([b("f2bz/1/ack"), b(`${ID}0000000000000000`)]), {
    ok: false,
    reason: "schema",
  });
  t.deepEqual(decodeSubmitReply([b("f2bz/1/ack"), b(ID), b("never-ban")]), { ok: false, reason: "frames" });
  t.deepEqual(decodeSubmitReply([b("f2bz/1/ack")]), { ok: false, reason: "frames" });
  // A refusal of a message the publisher could not read carries no id; an ack always does.
  t.deepEqual(decodeSubmitReply(encodeNack("", "version")), {
    ok: true,
    message: { type: "nack", id: "", reason: "version" },
  });
  t.deepEqual(decodeSubmitReply([b("f2bz/1/ack"), b("")]), { ok: false, reason: "schema" });
  t.deepEqual(decodeSubmitReply([b("f2bz/1/ack"), Buffer.alloc(1000)]), { ok: false, reason: "size" });
  t.deepEqual(decodeSubmitReply([]), { ok: false, reason: "frames" });
});
