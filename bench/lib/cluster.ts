import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { stringify } from "yaml";
import { parseConfig } from "../../src/config/load.js";
import type { Config, PublisherConfig } from "../../src/config/schema.js";
import { writeIdentity } from "../../src/keys/files.js";
import { generateIdentity, type SecretIdentity } from "../../src/keys/identity.js";
import { ensureLayout, keyHex, type Role, roleDir } from "../../src/keys/store.js";
import type { Logger } from "../../src/logging.js";
import { type SignedEvent, signEvent } from "../../src/protocol/signature.js";
import type { ZapRegistry } from "../../src/transport/zap.js";

export const silent: Logger = pino({ level: "silent" });

/** A scratch directory with a publisher key layout, the way an operator sets one up. */
export interface Scratch {
  dir: string;
  keysDir: string;
  identity(name: string, authorize?: Role): Promise<SecretIdentity>;
  /** A publisher config as the real loader makes it; limits raised so that nothing is rate-limited. */
  publisherConfig(identity: SecretIdentity): Config & { publisher: PublisherConfig };
  remove(): Promise<void>;
}

export async function scratch(prefix: string): Promise<Scratch> {
  const dir = await mkdtemp(path.join(tmpdir(), `f2bz-bench-${prefix}-`));
  const keysDir = path.join(dir, "publisher-keys");
  await ensureLayout(keysDir);
  const keys = path.join(dir, "keys");
  return {
    dir,
    keysDir,
    async identity(name, authorize) {
      const identity = await generateIdentity(name);
      const written = await writeIdentity(keys, identity, false);
      if (authorize)
        await copyFile(written.publicFile, path.join(roleDir(keysDir, authorize), `${name}.key`));
      return identity;
    },
    publisherConfig(identity) {
      const yaml = stringify({
        node: {
          name: identity.name,
          identity: path.join(keys, `${identity.name}.key_secret`),
          stateDir: path.join(dir, "state"),
        },
        publisher: {
          submit: "tcp://127.0.0.1:*",
          feed: "tcp://127.0.0.1:*",
          snapshot: "tcp://127.0.0.1:*",
          keys: keysDir,
          // The schema's upper bounds: far above what one machine submits.
          perOriginRate: 100_000,
          perOriginBurst: 1_000_000,
          globalRate: 1_000_000,
        },
      });
      return parseConfig(yaml, path.join(dir, "f2bz.yaml")) as Config & { publisher: PublisherConfig };
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Runs `body` in a fresh scratch directory, removed afterwards whatever happens. */
export async function inScratch<T>(prefix: string, body: (dir: Scratch) => Promise<T>): Promise<T> {
  const dir = await scratch(prefix);
  try {
    return await body(dir);
  } finally {
    await dir.remove();
  }
}

/** A ZAP registry in memory for the baselines: the same keys, the same answers as the publisher's. */
export function allowList(domain: "submit" | "feed", identities: readonly SecretIdentity[]): ZapRegistry {
  const allowed = new Map(identities.map((i) => [keyHex(i.curvePublic), i]));
  return {
    lookup(d, key) {
      const found = d === domain ? allowed.get(keyHex(key)) : undefined;
      return found && { nodeId: found.nodeId, name: found.name };
    },
  };
}

/**
 * Signs bans as `identity`, numbered on from the last call, each for another address, all stamped
 * now: events signed before a round, so that signing is not what a round measures.
 */
export function presigner(identity: SecretIdentity): (count: number) => Promise<SignedEvent[]> {
  let seq = 0;
  return async (count) => {
    const now = Date.now();
    const events: SignedEvent[] = [];
    for (let i = 0; i < count; i++) {
      seq++;
      const fields = { seq, kind: "ban" as const, jail: "sshd", ip: benchAddress(seq), time: now };
      events.push(await signEvent(identity, { ...fields, expires: now + 3_600_000 }));
    }
    return events;
  };
}

/** The n-th address of 198.18.0.0/15, the range set aside for benchmarks (RFC 2544). */
export function benchAddress(n: number): string {
  return `198.${18 + ((n >> 16) & 1)}.${(n >> 8) & 255}.${n & 255}`;
}
