/**
 * A strict reader and writer for ZPL (ZeroMQ RFC 4), the text format of CZMQ certificates.
 * Only what certificates use: nested sections by 4-space indentation, `name = "value"` and comments.
 * Z85 contains `#` and `=`, so values are read from quotes and names split at the first `=`.
 */
export type ZplEntries = Map<string, string>;

/**
 * `reason` never quotes the text; `message` may, for files that hold nothing secret. A secret
 * certificate's error is built from `line` and `reason` only, so no part of a key is ever echoed.
 */
export class ZplError extends Error {
  constructor(
    readonly line: number,
    readonly reason: string,
    quoted?: string,
  ) {
    super(`line ${line}: ${reason}${quoted === undefined ? "" : ` '${quoted}'`}`);
  }
}

const NAME = /^[A-Za-z0-9$\-_@.&+/]+$/;

/** Parses ZPL text into a flat map of `section/name` paths to values. */
export function parseZpl(text: string): ZplEntries {
  const entries: ZplEntries = new Map();
  const path: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i]!.replace(/\r$/, "");
    const trimmed = raw.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const indent = raw.length - raw.trimStart().length;
    if (raw.slice(0, indent).includes("\t") || indent % 4 !== 0) {
      throw new ZplError(lineNo, "indentation must be a multiple of 4 spaces");
    }
    const depth = indent / 4;
    if (depth > path.length) throw new ZplError(lineNo, "indented deeper than its parent section");
    path.length = depth;
    const eq = trimmed.indexOf("=");
    const name = (eq < 0 ? trimmed.replace(/\s+#.*$/, "") : trimmed.slice(0, eq)).trim();
    if (!NAME.test(name)) throw new ZplError(lineNo, "invalid name", name.slice(0, 40));
    const key = [...path, name].join("/");
    if (eq < 0) {
      path.push(name);
      continue;
    }
    const value = parseValue(trimmed.slice(eq + 1).trim(), lineNo);
    if (entries.has(key)) throw new ZplError(lineNo, "duplicate entry", key);
    entries.set(key, value);
    path.push(name);
  }
  return entries;
}

function parseValue(text: string, lineNo: number): string {
  const quote = text[0];
  if (quote === '"' || quote === "'") {
    const end = text.indexOf(quote, 1);
    if (end < 0) throw new ZplError(lineNo, "unterminated quoted value");
    const rest = text.slice(end + 1).trim();
    if (rest !== "" && !rest.startsWith("#")) throw new ZplError(lineNo, "unexpected text after value");
    return text.slice(1, end);
  }
  return text.replace(/\s+#.*$/, "").trim();
}

export interface ZplSection {
  name: string;
  entries: [string, string][];
}

/** Writes sections in CZMQ's layout; values are always double-quoted, as zconfig does. */
export function formatZpl(header: string[], sections: ZplSection[]): string {
  const lines = header.map((line) => (line === "" ? "#" : `#   ${line}`));
  lines.push("");
  for (const section of sections) {
    lines.push(section.name);
    for (const [name, value] of section.entries) {
      if (value.includes('"') || value.includes("\n")) throw new Error(`value of ${name} cannot be quoted`);
      lines.push(`    ${name} = "${value}"`);
    }
  }
  return `${lines.join("\n")}\n`;
}
