import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import path from "node:path";
import { F2bzError, quote } from "../errors.js";
import { checkMode, checkOwner, NO_WRITE, readKeyBytes } from "./files.js";
import { type PublicIdentity, parsePublicCertificate } from "./identity.js";
import { parseZpl, type ZplEntries } from "./zpl.js";

/**
 * Authorizing a key (`keys add`, `keys accept`) runs as root on a file others may control: a node's
 * .key in /tmp, or a pending record written by the publisher's user. The source is read once,
 * through the descriptor whose owner, mode and type were checked, and the authorized file is
 * written from those very bytes: never copied by path, which let a symlink swapped in after the
 * check make root copy any root-only file into authorized/.
 */
export interface KeySource {
  file: string;
  /** Exactly what was read, parsed and is installed. */
  bytes: Buffer;
  identity: PublicIdentity;
  /** The parsed certificate, for metadata (a pending record's role). */
  entries: ZplEntries;
}

/**
 * `owners`: the uids the file may belong to (any, if absent). Always refused: a file others may
 * write, since whoever can write it chose the key the operator is about to trust, and a file with
 * several hard links, which may be another file's name (a root-only file linked into place).
 */
export async function readKeySource(
  file: string,
  owners?: { uids: readonly number[]; expected: string },
): Promise<KeySource> {
  const what = `key file ${quote(file)}`;
  const bytes = await readKeyBytes(file, (stat) => {
    if (owners) checkOwner(what, stat, owners.uids, owners.expected);
    checkMode(what, stat, 0o022, NO_WRITE);
    if (stat.nlink === 0) {
      throw new F2bzError("KEY_PERMISSIONS", `${what} was replaced while it was being read`);
    }
    if (stat.nlink !== 1) {
      throw new F2bzError("KEY_PERMISSIONS", `${what} has ${stat.nlink} hard links, expected 1`);
    }
  });
  const text = bytes.toString("utf8");
  const identity = parsePublicCertificate(file, text);
  return { file, bytes, identity, entries: parseZpl(text) };
}

/**
 * pending/ is written by the publisher, so its owner is the publisher's user: a pending record
 * may belong to that user, to root or to us, and pending/ must be writable by nobody else, or any
 * local user could lay a record (or a link to another file) there for root to accept.
 */
export async function readPendingSource(pendingDir: string, file: string): Promise<KeySource> {
  let stat: Awaited<ReturnType<typeof fs.lstat>>;
  try {
    stat = await fs.lstat(pendingDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    return readKeySource(file); // Reported on the file: it does not exist either.
  }
  if (!stat.isDirectory()) {
    throw new F2bzError("KEY_PERMISSIONS", `key directory ${quote(pendingDir)} is not a directory`);
  }
  const dir = `key directory ${quote(pendingDir)}`;
  checkMode(dir, stat, 0o022, NO_WRITE);
  const uid = process.geteuid?.() ?? 0;
  const us = uid === 0 ? "root" : `uid ${uid}, root`;
  return readKeySource(file, {
    uids: [0, uid, stat.uid],
    expected: `${us} or the owner of ${quote(pendingDir)} (uid ${stat.uid})`,
  });
}

/**
 * Writes `bytes` as the new file `target`: a temporary file created O_EXCL|O_NOFOLLOW with mode
 * 0644 (never writable by others, not even for a moment: a writer who opened it then would keep
 * a descriptor and could replace the key later), fsynced, linked into place (refusing an existing
 * file), then the directory is fsynced.
 */
export async function installKeyFile(target: string, bytes: Uint8Array): Promise<void> {
  const dir = path.dirname(target);
  // Not named *.key: a publisher reading the directory never sees a half-written key.
  const tmp = path.join(dir, `.${path.basename(target)}.${randomBytes(6).toString("hex")}.tmp`);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const handle = await fs.open(tmp, flags, 0o644);
  try {
    try {
      await handle.writeFile(bytes);
      // The umask may have narrowed the mode; it can only have removed bits.
      await handle.chmod(0o644);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.link(tmp, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") {
      throw new F2bzError("KEY_DUPLICATE", `${quote(target)} already exists`);
    }
    throw error;
  } finally {
    await fs.rm(tmp, { force: true });
  }
  const dirHandle = await fs.open(dir, constants.O_RDONLY);
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
