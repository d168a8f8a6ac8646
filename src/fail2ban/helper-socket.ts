import { promises as fs, type Stats } from "node:fs";
import path from "node:path";
import { type ErrorCode, F2bzError, quote } from "../errors.js";

/**
 * Who may own the ban-helper's socket and the directories around it: root, or the process itself
 * (a test, or a helper run by hand as one user; trusting oneself gives nothing away). Anyone else
 * who controls one of them can put their own socket where the subscriber connects, or replace the
 * helper's socket or ledger between a check and its use.
 */
function trustedOwner(uid: number): boolean {
  return uid === 0 || uid === (process.geteuid?.() ?? 0);
}

/**
 * Why `stat` (from lstat) is not a directory that only a trusted owner may change, or undefined
 * when it is one. Group write is tolerated only for root's own group.
 */
export function untrustedDirReason(stat: Stats): string | undefined {
  if (!stat.isDirectory()) return "is not a directory";
  if (!trustedOwner(stat.uid)) return `is owned by uid ${stat.uid}, expected root`;
  const mode = stat.mode & 0o7777;
  if ((mode & 0o002) !== 0 || ((mode & 0o020) !== 0 && stat.gid !== 0)) {
    return `has mode ${mode.toString(8).padStart(4, "0")}, expected no write permission for group or others`;
  }
  return undefined;
}

/** Throws `code` unless `dir` is a directory only root may change (see untrustedDirReason). */
export async function checkTrustedDir(what: string, dir: string, code: ErrorCode): Promise<void> {
  const stat = await fs.lstat(dir).catch((error: NodeJS.ErrnoException) => {
    throw new F2bzError(code, `cannot inspect ${what} ${quote(dir)}: ${error.code ?? error.message}`);
  });
  const reason = untrustedDirReason(stat);
  if (reason !== undefined) throw new F2bzError(code, `${what} ${quote(dir)} ${reason}`);
}

/**
 * The subscriber's check before it connects: the helper's socket is a socket owned by root in a
 * directory only root may change. Node has no SO_PEERCRED, so this is the equivalent on the path.
 * Residual risk: the check and the connect are two steps, safe only because nobody but root can
 * swap the path in between (hence the directory check); any process running as root (or as the
 * subscriber's own user) is trusted to be the helper.
 */
export async function checkHelperSocket(socket: string): Promise<void> {
  const code = "FAIL2BAN_FAILED";
  await checkTrustedDir("ban-helper socket directory", path.dirname(socket), code);
  const stat = await fs.lstat(socket).catch((error: NodeJS.ErrnoException) => {
    throw new F2bzError(code, `ban-helper ${quote(socket)}: cannot reach it: ${error.code ?? error.message}`);
  });
  if (!stat.isSocket()) throw new F2bzError(code, `ban-helper ${quote(socket)} is not a socket`);
  if (!trustedOwner(stat.uid)) {
    throw new F2bzError(
      code,
      `ban-helper socket ${quote(socket)} is owned by uid ${stat.uid}, expected root`,
    );
  }
}
