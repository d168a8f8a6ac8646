import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  promises as fs,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  type Stats,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { F2bzError, quote } from "../errors.js";
import { type Account, accountOfUid, describeUid } from "./accounts.js";
import {
  formatPublicCertificate,
  formatSecretCertificate,
  type PublicIdentity,
  parsePublicCertificate,
  parseSecretCertificate,
  type SecretIdentity,
} from "./identity.js";

const MAX_KEY_FILE = 4096;

function ioError(file: string, error: unknown): F2bzError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new F2bzError("KEY_NOT_FOUND", `key file ${quote(file)} does not exist`);
  if (code === "ELOOP") {
    return new F2bzError("KEY_PERMISSIONS", `key file ${quote(file)} is a symlink, expected a regular file`);
  }
  if (code === "EACCES") return new F2bzError("KEY_PERMISSIONS", `key file ${quote(file)} is not readable`);
  return new F2bzError("IO_FAILED", `cannot read key file ${quote(file)}: ${code ?? String(error)}`);
}

/**
 * secret: a node's own secret key (0600, ours or root's); authorized: an access token the publisher
 * or subscriber trusts (ours or root's, writable by nobody else); public: a file being read to be
 * added, checked for its content only.
 */
type KeyFileKind = "secret" | "authorized" | "public";

async function readKeyFile(file: string, kind: KeyFileKind): Promise<string> {
  const bytes = await readKeyBytes(
    file,
    (stat) => {
      if (kind === "secret") checkOwnerAndMode(`key file ${quote(file)}`, stat, 0o077, "expected 0600");
      if (kind === "authorized") checkOwnerAndMode(`key file ${quote(file)}`, stat, 0o022, NO_WRITE);
    },
    kind === "secret",
  );
  return bytes.toString("utf8");
}

/**
 * "Not readable" alone leaves the operator guessing; the usual cause is a secret created by root
 * (`keygen` run as root) for a daemon that runs as its own user. Says who owns what is in the way
 * (the file, or a directory that cannot be searched) and the command that fixes it.
 */
async function notReadable(file: string, secret: boolean): Promise<F2bzError> {
  const uid = process.geteuid?.() ?? 0;
  const me = describeUid(uid);
  const user = accountOfUid(uid)?.name ?? `${uid}`;
  const fix = (target: string) =>
    `run ${quote(`chown ${user}: ${target}`)}${secret ? ` or create it with ${quote(`f2bz keygen --owner ${user}`)}` : ""}`;
  try {
    const stat = await fs.lstat(file);
    return new F2bzError(
      "KEY_PERMISSIONS",
      `key file ${quote(file)} is owned by ${describeUid(stat.uid)} with mode ${octal(stat.mode)} and not readable by ${me}: ${fix(file)}`,
    );
  } catch {
    const dir = path.dirname(path.resolve(file));
    try {
      const stat = await fs.stat(dir);
      return new F2bzError(
        "KEY_PERMISSIONS",
        `key file ${quote(file)} is not readable by ${me}: its directory ${quote(dir)} is owned by ${describeUid(stat.uid)} with mode ${octal(stat.mode)}: ${fix(dir)}`,
      );
    } catch {
      return new F2bzError("KEY_PERMISSIONS", `key file ${quote(file)} is not readable by ${me}`);
    }
  }
}

const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, "0");

/**
 * Reads a key file without following a symlink, checking the opened descriptor (not the path) and
 * reading through that same descriptor, so the file cannot be swapped between the check and the
 * read. At most MAX_KEY_FILE bytes are read, even if the file grows after the check.
 */
export async function readKeyBytes(
  file: string,
  check: (stat: Stats) => void,
  secret = false,
): Promise<Buffer> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EACCES") throw await notReadable(file, secret);
    throw ioError(file, error);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new F2bzError("KEY_INVALID", `key file ${quote(file)} is not a regular file`);
    if (stat.size > MAX_KEY_FILE) throw tooLarge(file, stat.size);
    check(stat);
    const buffer = Buffer.alloc(MAX_KEY_FILE + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_KEY_FILE) throw tooLarge(file, length);
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}

function tooLarge(file: string, size: number): F2bzError {
  return new F2bzError(
    "KEY_INVALID",
    `key file ${quote(file)} is ${size} bytes, expected at most ${MAX_KEY_FILE}`,
  );
}

export async function loadSecretIdentity(file: string): Promise<SecretIdentity> {
  await checkKeyDirectory(path.dirname(path.resolve(file)));
  return parseSecretCertificate(file, await readKeyFile(file, "secret"));
}

export const NO_WRITE = "expected no write permission for group or others";

/**
 * As OpenSSH's StrictModes: whoever may write the directory holding a secret key, or an authorized
 * or revoked key, can replace the key (or revoke a revocation), so it must belong to us or root
 * and be writable by nobody else.
 */
export async function checkKeyDirectory(dir: string): Promise<void> {
  let stat: Awaited<ReturnType<typeof fs.stat>>;
  try {
    stat = await fs.stat(dir);
  } catch {
    return; // Reported on the file itself: it does not exist either.
  }
  checkOwnerAndMode(
    `key directory ${quote(dir)}`,
    stat,
    0o022,
    "expected no write permission for group or others",
  );
}

/** Owned by the running user or root, with none of the `forbidden` permission bits. */
function checkOwnerAndMode(
  what: string,
  stat: { uid: number; mode: number },
  forbidden: number,
  expected: string,
): void {
  const uid = process.geteuid?.() ?? 0;
  checkOwner(what, stat, [uid, 0], `uid ${uid} or root`);
  checkMode(what, stat, forbidden, expected);
}

export function checkOwner(
  what: string,
  stat: { uid: number },
  uids: readonly number[],
  expected: string,
): void {
  if (!uids.includes(stat.uid)) {
    throw new F2bzError("KEY_PERMISSIONS", `${what} is owned by uid ${stat.uid}, expected ${expected}`);
  }
}

/** None of the `forbidden` permission bits. */
export function checkMode(what: string, stat: { mode: number }, forbidden: number, expected: string): void {
  if ((stat.mode & forbidden) !== 0) {
    throw new F2bzError("KEY_PERMISSIONS", `${what} has mode ${octal(stat.mode)}, ${expected}`);
  }
}

/** `authorized`: the file is an access token, so its owner and mode are checked too. */
export async function loadPublicIdentity(
  file: string,
  options: { authorized?: boolean } = {},
): Promise<PublicIdentity> {
  return parsePublicCertificate(file, await readKeyFile(file, options.authorized ? "authorized" : "public"));
}

export interface WrittenIdentity {
  publicFile: string;
  secretFile: string;
}

/**
 * Writes NAME.key (0644) and NAME.key_secret (0600). Each file is written to a temporary name
 * created with O_EXCL under umask 077, fsynced, then linked into place (refusing an existing file)
 * or, with `force`, renamed over it; the directory is fsynced last.
 *
 * `owner`: the daemon's user, given the secret (and the directory, when created here, 0700 under
 * that umask) through the descriptors opened here, before the secret is linked into place: it never
 * appears under its name owned by anyone else, and no path is followed (no chown of a swapped link).
 */
export async function writeIdentity(
  dir: string,
  id: SecretIdentity,
  force: boolean,
  owner?: Account,
): Promise<WrittenIdentity> {
  const publicFile = path.join(dir, `${id.name}.key`);
  const secretFile = path.join(dir, `${id.name}.key_secret`);
  if (!force) {
    for (const file of [publicFile, secretFile]) {
      if (await exists(file)) {
        throw new F2bzError(
          "KEY_EXISTS",
          `key file ${quote(file)} already exists, use --force to replace it`,
        );
      }
    }
  }
  // Synchronous on purpose: the umask is process-wide, and no other work of this process may run
  // (and create files) while it is 077.
  const previousUmask = process.umask(0o077);
  try {
    const created = mkdirSync(dir, { recursive: true, mode: 0o755 }) !== undefined;
    // A directory made here is opened without following a link: it is the one chowned.
    const noFollow = created ? constants.O_NOFOLLOW : 0;
    const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | noFollow);
    try {
      if (owner && created) giveTo(dirFd, owner, dir);
      writeAtomically(secretFile, formatSecretCertificate(id), 0o600, force, owner);
      writeAtomically(publicFile, formatPublicCertificate(id), 0o644, force);
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch (error) {
    if (error instanceof F2bzError) throw error;
    throw new F2bzError("IO_FAILED", `cannot write keys to ${quote(dir)}: ${(error as Error).message}`);
  } finally {
    process.umask(previousUmask);
  }
  return { publicFile, secretFile };
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch {
    return false;
  }
}

function giveTo(fd: number, owner: Account, what: string): void {
  try {
    fchownSync(fd, owner.uid, owner.gid);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EPERM") throw error;
    throw new F2bzError(
      "KEY_PERMISSIONS",
      `cannot give ${quote(what)} to ${owner.name} (uid ${owner.uid}): operation not permitted, run keygen --owner as root`,
    );
  }
}

function writeAtomically(file: string, text: string, mode: number, force: boolean, owner?: Account): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const fd = openSync(tmp, flags, 0o600);
  try {
    writeFileSync(fd, text, "utf8");
    fchmodSync(fd, mode);
    if (owner) giveTo(fd, owner, file);
    fsyncSync(fd);
  } catch (error) {
    rmSync(tmp, { force: true });
    throw error;
  } finally {
    closeSync(fd);
  }
  try {
    if (force) {
      renameSync(tmp, file);
    } else {
      linkSync(tmp, file);
      unlinkSync(tmp);
    }
  } catch (error) {
    rmSync(tmp, { force: true });
    if ((error as NodeJS.ErrnoException).code === "EEXIST") {
      throw new F2bzError("KEY_EXISTS", `key file ${quote(file)} already exists, use --force to replace it`);
    }
    throw error;
  }
}
