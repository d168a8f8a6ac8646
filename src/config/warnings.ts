import { promises as fs } from "node:fs";
import { quote } from "../errors.js";
import type { Config } from "./schema.js";

/**
 * What is valid but almost surely not meant: a key directory that does not exist starts a publisher
 * that admits nobody, or a subscriber that refuses every event. The daemons start anyway (the
 * directory may be filled later, and both pick changes up), so these are warnings, one line each.
 */
export async function configWarnings(
  config: Config,
  file: string,
): Promise<{ section: "publisher" | "subscriber"; message: string }[]> {
  const checks = [
    ["publisher", "keys", config.publisher?.keys, "no monitor or subscriber is admitted"],
    ["subscriber", "origins", config.subscriber?.origins, "every event is refused as unauthorized"],
  ] as const;
  const warnings: { section: "publisher" | "subscriber"; message: string }[] = [];
  for (const [section, key, dir, consequence] of checks) {
    if (dir === undefined || (await exists(dir))) continue;
    const message = `config ${quote(file)}: '${section}.${key}' names directory ${quote(dir)}, which does not exist: ${consequence}`;
    warnings.push({ section, message });
  }
  return warnings;
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}
