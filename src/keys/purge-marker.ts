import { promises as fs } from "node:fs";
import path from "node:path";
import { keyHex, revokedDir } from "./store.js";

/**
 * `f2bz keys revoke NAME --purge-bans` leaves `revoked/<file>.key.purge` beside the revoked key: one
 * line, the node id and the verify key (hex) of the revoked origin. A running publisher that sees
 * one, once that origin is no longer authorized, drops every ban the origin holds, announces an
 * expiry for each, and removes the marker. Not a `.key` file: key loading never reads it.
 */
export const PURGE_SUFFIX = ".purge";

export interface PurgeMarker {
  file: string;
  origin: string;
  verifyKey: Uint8Array;
}

const LINE = /^([0-9a-f]{32}) ([0-9a-f]{64})\n$/;

export async function writePurgeMarker(
  revokedFile: string,
  identity: { nodeId: string; signPublic: Uint8Array },
): Promise<string> {
  const file = `${revokedFile}${PURGE_SUFFIX}`;
  await fs.writeFile(file, `${identity.nodeId} ${keyHex(identity.signPublic)}\n`, { mode: 0o644 });
  return file;
}

/** Markers under revoked/; a file that is not exactly one marker line is skipped (and reported). */
export async function readPurgeMarkers(
  keysDir: string,
): Promise<{ markers: PurgeMarker[]; invalid: string[] }> {
  const dir = revokedDir(keysDir);
  let names: string[];
  try {
    names = (await fs.readdir(dir)).filter((n) => n.endsWith(PURGE_SUFFIX)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { markers: [], invalid: [] };
    throw error;
  }
  const markers: PurgeMarker[] = [];
  const invalid: string[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const text = await fs.readFile(file, "utf8").catch(() => undefined);
    const match = text === undefined || text.length > 256 ? null : LINE.exec(text);
    if (!match) {
      invalid.push(file);
      continue;
    }
    markers.push({ file, origin: match[1]!, verifyKey: Buffer.from(match[2]!, "hex") });
  }
  return { markers, invalid };
}
