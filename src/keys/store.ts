import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { type ErrorCode, F2bzError, quote } from "../errors.js";
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

export interface SkippedEntry {
  /** The key file (or directory) that was not used. */
  file: string;
  /** One line, naming the file: why it was not used. */
  reason: string;
  code: ErrorCode;
}

/** A key set as loaded, with every entry that was left out and why. */
export interface KeyLoad {
  set: KeySet;
  skipped: SkippedEntry[];
}

function skippedOf(file: string, error: unknown): SkippedEntry {
  return error instanceof F2bzError
    ? { file, reason: error.message, code: error.code }
    : { file, reason: `cannot read ${quote(file)}: ${String(error)}`, code: "IO_FAILED" };
}

export interface Scan {
  entries: KeyEntry[];
  skipped: SkippedEntry[];
  /** Key files found, bad or not; undefined when the directory could not be listed. */
  files: string[] | undefined;
  /** The directory itself cannot be trusted (unreadable, or writable by others). */
  directory?: SkippedEntry;
}

/**
 * Every key of a directory that loads; one bad file never hides the others. `authorized`: the
 * files are access tokens (authorized/, revoked/, a subscriber's origins): the directory and each
 * file must be writable by nobody but us or root.
 */
export async function scanEntries(dir: string, options: { authorized?: boolean } = {}): Promise<Scan> {
  let files: string[];
  try {
    files = await listKeyFiles(dir);
  } catch (error) {
    const directory = skippedOf(dir, error);
    return { entries: [], skipped: [directory], files: undefined, directory };
  }
  const scan: Scan = { entries: [], skipped: [], files };
  if (options.authorized) {
    try {
      await checkKeyDirectory(dir);
    } catch (error) {
      scan.directory = skippedOf(dir, error);
      scan.skipped.push(scan.directory);
    }
  }
  for (const file of files) {
    try {
      const identity = await loadPublicIdentity(file, options);
      scan.entries.push({ ...identity, file, id: path.basename(file, ".key") });
    } catch (error) {
      scan.skipped.push(skippedOf(file, error));
    }
  }
  return scan;
}

/**
 * The keys an authorized directory grants: none when the directory itself cannot be trusted (its
 * files may have been put there by anyone), never a bad file, never a second file of one key.
 */
async function grantedEntries(dir: string): Promise<{ entries: KeyEntry[]; skipped: SkippedEntry[] }> {
  const scan = await scanEntries(dir, { authorized: true });
  if (scan.directory) return { entries: [], skipped: [scan.directory] };
  const { entries, skipped } = withoutDuplicates(scan.entries);
  return { entries, skipped: [...scan.skipped, ...skipped] };
}

/**
 * Threat: a revocation undone by a file the publisher cannot read. A revocation only ever takes
 * access away, so revoked/ fails closed: a bad file still revokes what it holds if it parses, and
 * what it held at the last load; a directory that others may write (who could delete revocations)
 * or that cannot be read keeps every earlier revocation. With no earlier load (at start), a
 * directory that cannot be listed refuses to start: what is revoked is unknown.
 */
async function revokedEntries(
  dir: string,
  previous: readonly KeyEntry[] | undefined,
): Promise<{ entries: KeyEntry[]; skipped: SkippedEntry[] }> {
  const scan = await scanEntries(dir, { authorized: true });
  if (scan.files === undefined && previous === undefined) {
    const error = scan.directory!;
    throw new F2bzError(error.code, error.reason);
  }
  const entries = [...scan.entries];
  const loaded = new Set(scan.entries.map((e) => e.file));
  for (const file of scan.files ?? []) {
    if (loaded.has(file)) continue;
    // Content only: an untrusted file can add a refusal, never lift one.
    const identity = await loadPublicIdentity(file).catch(() => undefined);
    if (identity) entries.push({ ...identity, file, id: path.basename(file, ".key") });
    entries.push(...(previous ?? []).filter((e) => e.file === file));
  }
  if (scan.directory) entries.push(...(previous ?? []));
  return { entries: uniqueKeys(entries), skipped: scan.skipped };
}

function uniqueKeys(entries: KeyEntry[]): KeyEntry[] {
  const seen = new Set<string>();
  return entries.filter((e) => {
    const key = `${keyHex(e.curvePublic)} ${e.nodeId}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Two files with the same key in one directory: the operator's intent is unclear, so the first by
 * name is used and the others are skipped and reported.
 */
function withoutDuplicates(entries: KeyEntry[]): { entries: KeyEntry[]; skipped: SkippedEntry[] } {
  const seen = new Map<string, KeyEntry>();
  const kept: KeyEntry[] = [];
  const skipped: SkippedEntry[] = [];
  for (const entry of entries) {
    const curve = keyHex(entry.curvePublic);
    const other = seen.get(curve) ?? seen.get(entry.nodeId);
    if (other) {
      skipped.push({
        file: entry.file,
        reason: `key file ${quote(entry.file)} holds the same key as ${quote(other.file)}`,
        code: "KEY_DUPLICATE",
      });
      continue;
    }
    seen.set(curve, entry);
    seen.set(entry.nodeId, entry);
    kept.push(entry);
  }
  return { entries: kept, skipped };
}

/**
 * The key set as the publisher uses it. Never fails for a bad entry: removals and revocations
 * always apply, and each entry left out is returned in `skipped`. `previous`, the set of the last
 * load, is what keeps revocations in force when revoked/ cannot be read.
 */
export async function loadKeySet(keysDir: string, previous?: KeySet): Promise<KeyLoad> {
  const monitors = await grantedEntries(roleDir(keysDir, "monitor"));
  const subscribers = await grantedEntries(roleDir(keysDir, "subscriber"));
  const revoked = await revokedEntries(revokedDir(keysDir), previous?.revoked);
  return {
    set: { monitors: monitors.entries, subscribers: subscribers.entries, revoked: revoked.entries },
    skipped: [...monitors.skipped, ...subscribers.skipped, ...revoked.skipped],
  };
}

/**
 * A publisher's key pinned in a monitor's or subscriber's config: whoever may replace it can put
 * their own publisher in the middle, so it is checked as an authorized key is (file and directory
 * ours or root's, writable by nobody else).
 */
export async function loadPinnedKey(file: string): Promise<PublicIdentity> {
  await checkKeyDirectory(path.dirname(path.resolve(file)));
  return loadPublicIdentity(file, { authorized: true });
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

/**
 * Owner, mode and inode of each directory, and names, inode, size, mtime, owner and mode of every
 * key file: cheap to take every poll, and it changes whenever a file is added, removed, renamed,
 * rewritten (rename-over changes the inode) or has its permissions changed. Never throws: an
 * error is part of the signature, so that its end is noticed too.
 */
export async function directorySignature(dirs: readonly string[]): Promise<string> {
  const parts: string[] = [];
  const describe = async (file: string) => {
    try {
      const st = await fs.lstat(file, { bigint: true });
      return `${file} ${st.ino} ${st.size} ${st.mtimeNs} ${st.mode} ${st.uid}`;
    } catch (error) {
      return `${file} ${(error as NodeJS.ErrnoException).code ?? "error"}`;
    }
  };
  for (const dir of dirs) {
    parts.push(await describe(dir));
    let names: string[];
    try {
      names = (await fs.readdir(dir)).filter((n) => n.endsWith(".key")).sort();
    } catch (error) {
      parts.push(`${dir} list ${(error as NodeJS.ErrnoException).code ?? "error"}`);
      continue;
    }
    for (const name of names) parts.push(await describe(path.join(dir, name)));
  }
  return parts.join("\n");
}
