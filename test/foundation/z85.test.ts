import { randomBytes } from "node:crypto";
import test from "ava";
import { sodium } from "../../src/keys/sodium.js";
import { Z85Error, z85Decode, z85Encode } from "../../src/keys/z85.js";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex").toUpperCase();
const fromHex = (text: string) => new Uint8Array(Buffer.from(text, "hex"));

test("rfc 32 test vector: 86 4F D2 6F B5 59 F7 5B <-> HelloWorld", (t) => {
  const bytes = fromHex("864FD26FB559F75B");
  t.is(z85Encode(bytes), "HelloWorld");
  t.deepEqual(z85Decode("HelloWorld"), bytes);
});

test("the edges of a group: 00000000 and FFFFFFFF", (t) => {
  t.is(z85Encode(fromHex("00000000")), "00000");
  t.is(z85Encode(fromHex("FFFFFFFF")), "%nSc0");
  t.is(hex(z85Decode("%nSc0")), "FFFFFFFF");
});

// The CURVE test keys of libzmq's zmq_curve(7) manual, in hex and in Z85.
const LIBZMQ_TEST_KEYS = [
  {
    name: "client public",
    hex: "BB88471D65E2659B30C55A5321CEBB5AAB2B70A398645C26DCA2B2FCB43FC518",
    z85: "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID",
  },
  {
    name: "client secret",
    hex: "7BB864B489AFA3671FBE69101F94B38972F24816DFB01B51656B3FEC8DFD0888",
    z85: "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs",
  },
  {
    name: "server public",
    hex: "54FCBA24E93249969316FB617C872BB0C1D1FF14800427C594CBFACF1BC2D652",
    z85: "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
  },
  {
    name: "server secret",
    hex: "8E0BDD697628B91D8F245587EE95C5B04D48963F79259877B49CD9063AEAD3B7",
    z85: "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6",
  },
] as const;

for (const vector of LIBZMQ_TEST_KEYS) {
  test(`libzmq test key (${vector.name}) encodes and decodes`, (t) => {
    t.is(z85Encode(fromHex(vector.hex)), vector.z85);
    t.is(hex(z85Decode(vector.z85)), vector.hex);
  });
}

test("the libzmq test secret keys derive their public keys (the vectors are pairs)", async (t) => {
  const na = await sodium();
  const [clientPublic, clientSecret, serverPublic, serverSecret] = LIBZMQ_TEST_KEYS.map((k) =>
    z85Decode(k.z85),
  );
  t.deepEqual(na.crypto_scalarmult_base(clientSecret!), clientPublic);
  t.deepEqual(na.crypto_scalarmult_base(serverSecret!), serverPublic);
});

test("random data round-trips for every length that is a multiple of 4", (t) => {
  for (let length = 0; length <= 128; length += 4) {
    const bytes = new Uint8Array(randomBytes(length));
    const text = z85Encode(bytes);
    t.is(text.length, (length / 4) * 5);
    t.deepEqual(z85Decode(text), bytes);
  }
});

test("encoding refuses a length that is not a multiple of 4", (t) => {
  for (const length of [1, 2, 3, 5, 31, 33]) {
    t.throws(() => z85Encode(new Uint8Array(length)), { instanceOf: Z85Error, message: /multiple of 4/ });
  }
});

test("decoding refuses a length that is not a multiple of 5", (t) => {
  for (const text of ["H", "Hell", "HelloW", "HelloWorl", "HelloWorld0"]) {
    t.throws(() => z85Decode(text), { instanceOf: Z85Error, message: /multiple of 5/ });
  }
});

test("decoding refuses characters outside the alphabet", (t) => {
  // Space, quotes, backslash, comma, semicolon, tilde, backtick, '|', '_', NUL, DEL, and non-ASCII.
  for (const bad of [" ", '"', "'", "\\", ",", ";", "~", "`", "|", "_", "\0", "\x7f", "é", "\u2028"]) {
    const text = `Hell${bad}World`;
    t.throws(() => z85Decode(text), { instanceOf: Z85Error, message: /invalid z85 character at offset 4/ });
  }
});

test("decoding refuses a group worth more than 0xFFFFFFFF", (t) => {
  // 85^5 - 1 = 4437053124 and the smallest overflowing group "%nSc1" = 2^32.
  for (const text of ["%%%%%", "%nSc1", "HelloWorld%%%%%"]) {
    t.throws(() => z85Decode(text), { instanceOf: Z85Error, message: /exceeds 32 bits/ });
  }
});

test("the empty string is the empty key", (t) => {
  t.deepEqual(z85Decode(""), new Uint8Array(0));
  t.is(z85Encode(new Uint8Array(0)), "");
});
