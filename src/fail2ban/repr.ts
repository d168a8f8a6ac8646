/**
 * fail2ban-client prints results as Python reprs, not JSON: `['192.0.2.1', '2001:db8::1']`. This
 * reads a flat list of Python string literals, the only shape f2bz needs; anything else (nested
 * lists, numbers, a truncated line) is undefined rather than a guess. The text is untrusted: a jail
 * holds whatever strings were banned into it, quotes and backslashes included.
 */
export function parsePythonStringList(text: string): string[] | undefined {
  const s = text.trim();
  if (!s.startsWith("[") || !s.endsWith("]")) return undefined;
  const items: string[] = [];
  let i = 1;
  const end = s.length - 1;
  skipBlanks();
  if (i === end) return items;
  for (;;) {
    const item = readString();
    if (item === undefined) return undefined;
    items.push(item);
    skipBlanks();
    if (i === end) return items;
    if (s[i] !== ",") return undefined;
    i++;
    skipBlanks();
  }

  function skipBlanks() {
    while (i < end && (s[i] === " " || s[i] === "\n" || s[i] === "\t")) i++;
  }

  function readString(): string | undefined {
    const q = s[i];
    if (q !== "'" && q !== '"') return undefined;
    i++;
    let out = "";
    while (i < end) {
      const c = s[i]!;
      if (c === q) {
        i++;
        return out;
      }
      if (c !== "\\") {
        out += c;
        i++;
        continue;
      }
      const e = s[i + 1];
      const simple: Record<string, string> = { "\\": "\\", "'": "'", '"': '"', n: "\n", r: "\r", t: "\t" };
      if (e !== undefined && e in simple) {
        out += simple[e];
        i += 2;
        continue;
      }
      const width = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
      const hex = s.slice(i + 2, i + 2 + width);
      if (width === 0 || !/^[0-9a-fA-F]+$/.test(hex) || hex.length !== width) return undefined;
      const code = Number.parseInt(hex, 16);
      if (code > 0x10ffff) return undefined;
      out += String.fromCodePoint(code);
      i += 2 + width;
    }
    return undefined;
  }
}
