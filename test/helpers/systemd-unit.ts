import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The shipped units: tools/systemd. */
export const SYSTEMD_DIR = fileURLToPath(new URL("../../tools/systemd/", import.meta.url));

/** A unit file's sections in order, each a list of key=value pairs (keys may repeat). */
export type Unit = Map<string, [string, string][]>;

/** systemd's ini dialect, enough for a lint: sections of key=value lines, comments dropped. */
export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: [string, string][] | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = [];
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf("=");
    if (!section || eq === -1) throw new Error(`not a unit line: ${line}`);
    section.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return unit;
}

/** Every value of `key` in `section`, in order. */
export const values = (unit: Unit, section: string, key: string): string[] =>
  (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);

/** The value that counts: the last one. */
export const value = (unit: Unit, section: string, key: string): string | undefined =>
  values(unit, section, key).at(-1);

/** A shipped unit by file name, as text and parsed. */
export async function loadUnit(name: string): Promise<{ text: string; unit: Unit }> {
  const text = await fs.readFile(path.join(SYSTEMD_DIR, name), "utf8");
  return { text, unit: parseUnit(text) };
}
