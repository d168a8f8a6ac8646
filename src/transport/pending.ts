import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import path from "node:path";
import type { KeyEntry, Role } from "../keys/store.js";
import { pendingDir } from "../keys/store.js";
import { z85Encode } from "../keys/z85.js";
import { formatZpl, parseZpl } from "../keys/zpl.js";

/**
 * Writes keys/pending/<id>.key: a public certificate of a key that tried to connect, in the ZPL
 * format `f2bz keys pending|accept` read. Everything in it but the key is advisory: the operator
 * checks the fingerprint out of band before accepting.
 */
export interface PendingKey {
  id: string;
  curvePublic: Uint8Array;
  /** Peer address as libzmq reported it (untrusted text). */
  address: string;
  firstSeen: string;
  lastSeen: string;
  attempts: number;
  /** Set once an existing file's first-seen and attempts were merged into this record. */
  merged: boolean;
}

const HEADER = [
  "****  Recorded by the f2bz publisher  ****",
  "An unknown key tried to connect. Compare its fingerprint with the node's operator",
  "before `f2bz keys accept <name>`. Deleting this file dismisses it until the key tries again;",
  "moving it to revoked/ refuses the key for good, without recording it again.",
];
const MAX_FILE = 4096;

/** Keeps only characters an IP address or an IPC peer (":uid:gid:pid") can contain. */
export function safeAddress(address: string): string {
  return address.replace(/[^0-9A-Za-z:.%_[\]-]/g, "?").slice(0, 64) || "?";
}

export function formatPendingKey(record: PendingKey, role: Role, known?: KeyEntry): string {
  return formatZpl(HEADER, [
    {
      name: "metadata",
      entries: [
        ["name", record.id],
        ["role", role],
        ["address", safeAddress(record.address)],
        ["first-seen", record.firstSeen],
        ["last-seen", record.lastSeen],
        ["attempts", String(record.attempts)],
        // A key authorized for the other role: say so, the operator may not expect it here.
        ...(known ? ([["known-as", known.id]] as [string, string][]) : []),
      ],
    },
    { name: "curve", entries: [["public-key", z85Encode(record.curvePublic)]] },
    // The ZAP handshake shows only the CURVE key; a monitor also needs its verify key, which is
    // known only if the same node is authorized in another role.
    ...(known?.signPublic
      ? [{ name: "sign", entries: [["verify-key", z85Encode(known.signPublic)]] as [string, string][] }]
      : []),
  ]);
}

/** Writes the record atomically (temporary file, then rename), merging a file from an earlier run. */
export async function writePendingKey(
  keysDir: string,
  record: PendingKey,
  role: Role,
  known?: KeyEntry,
): Promise<void> {
  const dir = pendingDir(keysDir);
  const file = path.join(dir, `${record.id}.key`);
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  if (!record.merged) {
    record.merged = true;
    const earlier = await readEarlier(file, record.curvePublic);
    if (earlier) {
      record.firstSeen = earlier.firstSeen;
      record.attempts += earlier.attempts;
    }
  }
  // Not named *.key, so a reader never sees a half-written certificate.
  const tmp = path.join(dir, `.${record.id}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await fs.open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o644,
  );
  try {
    await handle.writeFile(formatPendingKey(record, role, known), "utf8");
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(tmp, file);
  } catch (error) {
    await fs.rm(tmp, { force: true });
    throw error;
  }
}

/** First-seen and attempts of an earlier record of the same key; anything odd is ignored. */
async function readEarlier(
  file: string,
  curvePublic: Uint8Array,
): Promise<{ firstSeen: string; attempts: number } | undefined> {
  let text: string;
  try {
    const handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const stat = await handle.stat();
      if (!stat.isFile() || stat.size > MAX_FILE) return undefined;
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
    const entries = parseZpl(text);
    if (entries.get("curve/public-key") !== z85Encode(curvePublic)) return undefined;
    const firstSeen = entries.get("metadata/first-seen") ?? "";
    const attempts = Number(entries.get("metadata/attempts"));
    if (Number.isNaN(Date.parse(firstSeen)) || !Number.isSafeInteger(attempts) || attempts < 0) {
      return undefined;
    }
    return { firstSeen: new Date(firstSeen).toISOString(), attempts };
  } catch {
    return undefined;
  }
}
