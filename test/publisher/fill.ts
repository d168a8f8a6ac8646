import { createPrivateKey, sign } from "node:crypto";
import path from "node:path";
import Database from "better-sqlite3";
import { nodeIdOf, type SecretIdentity } from "../../src/keys/identity.js";
import { encodePayload, PROTOCOL_VERSION, SIGN_DOMAIN } from "../../src/protocol/event.js";
import { PublisherStore } from "../../src/publisher/store.js";
import { PUBLISHER_STATE_FILE } from "../../src/state/files.js";

/** PKCS#8 prefix of an Ed25519 private key: node's native signer, ~10x libsodium.js, same bytes. */
const ED25519_PKCS8 = Buffer.from("302e020100300506032b657004220420", "hex");

/** The n-th address of a filled store (0-based): 10.x.y.z, unique up to 16 million. */
export const filledIp = (n: number): string => `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;

/**
 * Puts `count` live bans of `origin`, really signed, straight into a publisher's state directory (one
 * transaction, not `count` acknowledged events), with the publisher sequence at `count`.
 */
export function fillPublisherState(stateDir: string, origin: SecretIdentity, count: number): void {
  new PublisherStore(stateDir).close();
  const key = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8, Buffer.from(origin.signSecret).subarray(0, 32)]),
    format: "der",
    type: "pkcs8",
  });
  const id = nodeIdOf(origin.signPublic);
  const publicKey = Buffer.from(origin.signPublic).toString("base64");
  const time = Date.now();
  const db = new Database(path.join(stateDir, PUBLISHER_STATE_FILE));
  try {
    const insert = db.prepare(
      "INSERT INTO holders (jail, ip, origin, id, expires, payload, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    db.transaction(() => {
      for (let n = 0; n < count; n++) {
        const seq = n + 1;
        const ip = filledIp(n);
        const expires = time + 3_600_000;
        const payload = encodePayload({
          v: PROTOCOL_VERSION,
          key: publicKey,
          id: `${id}:${seq}`,
          origin: id,
          seq,
          kind: "ban",
          jail: "sshd",
          ip,
          time,
          expires,
          name: origin.name,
        });
        const signature = sign(null, Buffer.concat([SIGN_DOMAIN, payload]), key);
        insert.run("sshd", ip, id, `${id}:${seq}`, expires, payload, signature);
      }
      db.prepare("UPDATE meta SET value = ? WHERE key = 'publisher_seq'").run(count);
      db.prepare("INSERT INTO origins (origin, high) VALUES (?, ?)").run(id, count);
    })();
  } finally {
    db.close();
  }
}
