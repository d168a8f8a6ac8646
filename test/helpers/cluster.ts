import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import type { ExecutionContext } from "ava";
import { pino } from "pino";
import { stringify } from "yaml";
import { parseConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import { writeIdentity } from "../../src/keys/files.js";
import { generateIdentity, type SecretIdentity } from "../../src/keys/identity.js";
import { ensureLayout, type Role, roleDir } from "../../src/keys/store.js";
import type { Logger } from "../../src/logging.js";
import { tempDir } from "./temp-dir.js";

/**
 * Builds clusters for integration tests the way an operator would: fresh identities written by
 * keygen's code, a publisher key directory, and configs parsed by the real loader (so every default
 * applies). Daemons are then started in-process with `startPublisher` & co, or as the built CLI.
 */
export interface TestNode {
  name: string;
  identity: SecretIdentity;
  publicKey: string;
  secretKey: string;
  stateDir: string;
}

export interface TestCluster {
  dir: string;
  /** publisher/keys: authorized/{monitors,subscribers}, revoked, pending. */
  keysDir: string;
  node(name: string): Promise<TestNode>;
  /** Copies a node's public key into authorized/<role>s. */
  authorize(node: TestNode, role: Role): Promise<void>;
  /** A config parsed from YAML text built from `sections` (relative paths against `dir`). */
  config(node: TestNode, sections: Record<string, unknown>): Config;
  /** Writes the config as a YAML file for the CLI, returns its path. */
  configFile(node: TestNode, sections: Record<string, unknown>): Promise<string>;
}

export async function testCluster(t: ExecutionContext): Promise<TestCluster> {
  const dir = await tempDir(t, "f2bz-cluster-");
  const keysDir = path.join(dir, "publisher-keys");
  await ensureLayout(keysDir);
  const keys = path.join(dir, "keys");
  await mkdir(keys, { recursive: true });
  const nodes = new Map<string, TestNode>();
  const yamlOf = (node: TestNode, sections: Record<string, unknown>) =>
    stringify({ node: { name: node.name, identity: node.secretKey, stateDir: node.stateDir }, ...sections });
  return {
    dir,
    keysDir,
    async node(name) {
      const existing = nodes.get(name);
      if (existing) return existing;
      const identity = await generateIdentity(name);
      const written = await writeIdentity(keys, identity, false);
      const node = {
        name,
        identity,
        publicKey: written.publicFile,
        secretKey: written.secretFile,
        stateDir: path.join(dir, "state", name),
      };
      nodes.set(name, node);
      return node;
    },
    async authorize(node, role) {
      await copyFile(node.publicKey, path.join(roleDir(keysDir, role), `${node.name}.key`));
    },
    config(node, sections) {
      return parseConfig(yamlOf(node, sections), path.join(dir, `${node.name}.yaml`));
    },
    async configFile(node, sections) {
      const file = path.join(dir, `${node.name}.yaml`);
      const { writeFile } = await import("node:fs/promises");
      await writeFile(file, yamlOf(node, sections));
      return file;
    },
  };
}

/** A logger for in-process daemons: silent unless F2BZ_TEST_LOG=debug (or another level) is set. */
export function testLogger(): Logger {
  return pino({ level: process.env.F2BZ_TEST_LOG ?? "silent" });
}

/** A loopback endpoint with an ephemeral port, resolved by the bind (see BoundEndpoint.address). */
export const ANY_PORT = "tcp://127.0.0.1:*";

/** Test clients retry fast, so that reconnects after a rebind or a restart do not dominate the run. */
export const FAST_RECONNECT = { reconnectInterval: 100, reconnectMaxInterval: 500 };
