import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { F2bzError, quote } from "../errors.js";
import { checkKeyDirectory, loadPublicIdentity } from "./files.js";
import type { PublicIdentity } from "./identity.js";

/**
 * The publisher's key directory, the access tokens of the cluster:
 *   authorized/monitors/*.key     may submit events (ZAP domain "submit")
 *   authorized/subscribers/*.key  may receive events and snapshots (ZAP domain "feed")
 *   revoked/*.key                 refused everywhere; always wins over authorized
 *   pending/*.key                 unknown keys that tried to connect, for `f2bz keys accept`
 */
export type Role = "monitor" | "subscriber";

export interface KeyEntry extends PublicIdentity {
  file: string;
  /** The file name without `.key`: the name `keys revoke` takes. */
  id: string;
}

export interface KeySet {
  monitors: KeyEntry[];
  subscribers: KeyEntry[];
  revoked: KeyEntry[];
}

export function roleDir(keysDir: string, role: Role): string {
  return path.join(keysDir, "authorized", `${role}s`);
}
export const revokedDir = (keysDir: string): string => path.join(keysDir, "revoked");
export const pendingDir = (keysDir: string): string => path.join(keysDir, "pending");

export const keyHex = (key: Uint8Array): string => Buffer.from(key).toString("hex");

/** A short, stable id for a raw CURVE key: names the files under pending/. */
export function pendingId(curvePublic: Uint8Array): string {
  return createHash("sha256").update(curvePublic).digest("hex").slice(0, 16);
}

export async function ensureLayout(keysDir: string): Promise<void> {
  for (const dir of [
    roleDir(keysDir, "monitor"),
    roleDir(keysDir, "subscriber"),
    revokedDir(keysDir),
    pendingDir(keysDir),
  ]) {
    await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  }
}

async function listKeyFiles(dir: string): Promise<string[]> {
  try {
    const names = await fs.readdir(dir);
    return names
      .filter((n) => n.endsWith(".key"))
      .sort()
      .map((n) => path.join(dir, n));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new F2bzError("IO_FAILED", `cannot read key directory ${quote(dir)}: ${(error as Error).message}`);
  }
}

/**
 * The keys of a directory. `authorized`: they are access tokens (authorized/, revoked/, a
 * subscriber's origins): the directory and every file must be writable by nobody but us or root.
 */
export async function loadEntries(dir: string, options: { authorized?: boolean } = {}): Promise<KeyEntry[]> {
  const entries: KeyEntry[] = [];
  const files = await listKeyFiles(dir);
  if (options.authorized) await checkKeyDirectory(dir);
  for (const file of files) {
    const identity = await loadPublicIdentity(file, options);
    entries.push({ ...identity, file, id: path.basename(file, ".key") });
  }
  return entries;
}

/** Refuses two files with the same key in one directory: the operator's intent would be unclear. */
function refuseDuplicates(entries: KeyEntry[]): void {
  const seen = new Map<string, KeyEntry>();
  for (const entry of entries) {
    const curve = keyHex(entry.curvePublic);
    const other = seen.get(curve) ?? seen.get(entry.nodeId);
    if (other) {
      throw new F2bzError(
        "KEY_DUPLICATE",
        `key file ${quote(entry.file)} holds the same key as ${quote(other.file)}`,
      );
    }
    seen.set(curve, entry);
    seen.set(entry.nodeId, entry);
  }
}

export async function loadKeySet(keysDir: string): Promise<KeySet> {
  const authorized = { authorized: true };
  const monitors = await loadEntries(roleDir(keysDir, "monitor"), authorized);
  const subscribers = await loadEntries(roleDir(keysDir, "subscriber"), authorized);
  const revoked = await loadEntries(revokedDir(keysDir), authorized);
  refuseDuplicates(monitors);
  refuseDuplicates(subscribers);
  return { monitors, subscribers, revoked };
}

export function isRevoked(set: KeySet, identity: PublicIdentity): boolean {
  const curve = keyHex(identity.curvePublic);
  return set.revoked.some((r) => keyHex(r.curvePublic) === curve || r.nodeId === identity.nodeId);
}

/** The authorized entries of a role that are not revoked. */
export function activeEntries(set: KeySet, role: Role): KeyEntry[] {
  return (role === "monitor" ? set.monitors : set.subscribers).filter((e) => !isRevoked(set, e));
}

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function checkKeyName(name: string): string {
  if (!SAFE_ID.test(name)) {
    throw new F2bzError(
      "USAGE",
      `key name ${quote(name)} is invalid, expected letters, digits, '.', '_' or '-'`,
    );
  }
  return name;
}
