import path from "node:path";
import { STATE_FILES } from "./files.js";

/**
 * Which daemon a state file belongs to, written into the file itself as SQLite's
 * `PRAGMA application_id` (four ASCII bytes, "f2bP" for the publisher, …). The file name says
 * whose file is expected; the id inside must agree, so that a garbage file, another application's
 * database or another daemon's f2bz file (the monitor's copied to the publisher's name) is refused
 * instead of being migrated into, or read as empty state.
 */
export interface StateRole {
  /** For messages: "the publisher's". */
  owner: string;
  applicationId: number;
}

const ascii = (tag: string): number => Buffer.from(tag, "ascii").readInt32BE(0);

const ROLES: Readonly<Record<string, StateRole>> = {
  [STATE_FILES.publisher]: { owner: "publisher", applicationId: ascii("f2bP") },
  [STATE_FILES.monitor]: { owner: "monitor", applicationId: ascii("f2bM") },
  [STATE_FILES.subscriber]: { owner: "subscriber", applicationId: ascii("f2bS") },
  // The ban-helper's ledger (src/ban-helper/ledger.ts), named here because the core cannot import it.
  "ban-helper.sqlite": { owner: "ban-helper", applicationId: ascii("f2bH") },
};

/** Any other file opened through openDatabase: an f2bz file, of no particular daemon. */
const GENERIC: StateRole = { owner: "f2bz", applicationId: ascii("f2bz") };

export function roleOfStateFile(file: string): StateRole {
  return ROLES[path.basename(file)] ?? GENERIC;
}

/** The role whose id this is, when it is one of f2bz's. */
export function roleOfApplicationId(id: number): StateRole | undefined {
  return [...Object.values(ROLES), GENERIC].find((role) => role.applicationId === id);
}
