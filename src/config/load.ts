import { promises as fs } from "node:fs";
import path from "node:path";
import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, visit } from "yaml";
import { F2bzError, quote } from "../errors.js";
import type { CrossIssue } from "./cross-checks.js";
import { closest, describeIssue, keyName, knownKeys, lowerFirst } from "./issues.js";
import { type Config, configSchema } from "./schema.js";

export const DEFAULT_CONFIG = "/etc/f2bz/f2bz.yaml";

/** Reads and validates the config file. Every error names the file, the line and the key. */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      throw new F2bzError("CONFIG_NOT_FOUND", `config file ${quote(file)} does not exist`);
    throw new F2bzError(
      "CONFIG_NOT_FOUND",
      `cannot read config file ${quote(file)}: ${code ?? String(error)}`,
    );
  }
  return parseConfig(text, path.resolve(file));
}

type YamlDocument = ReturnType<typeof parseDocument>;

export function parseConfig(text: string, file: string): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const invalid = (line: number, what: string) =>
    new F2bzError("CONFIG_INVALID", `config ${quote(file)} line ${line}: ${what}`);
  const yamlError = doc.errors[0];
  if (yamlError) {
    let offset = yamlError.pos[0];
    // yaml reports an unterminated quote where the file ends; the operator needs where it opened,
    // which is the last quote of that kind (nothing after it can close it).
    const quoteChar = /^Missing closing (["'])quote/.exec(yamlError.message)?.[1];
    if (quoteChar) offset = Math.max(0, text.lastIndexOf(quoteChar, offset));
    const line = lineCounter.linePos(offset).line;
    let reason = lowerFirst(yamlError.message.split("\n")[0]!.replace(/ at line \d+.*$/, ""));
    if (yamlError.code === "DUPLICATE_KEY") {
      const key = /^[^\s:]+/.exec(text.slice(yamlError.pos[0]))?.[0];
      if (key) reason = `duplicate key ${quote(key)}`;
    } else if (yamlError.code === "MULTIPLE_DOCS") {
      reason = "expected a single document, found a second '---'";
    }
    throw invalid(line, `invalid yaml: ${reason}`);
  }
  // Aliases would let a short file expand into a huge one, and a key that is a list or a mapping
  // has no name to report: a config file needs neither.
  let refused: F2bzError | undefined;
  const lineOf = (node: { range?: [number, number, number] | null } | null) =>
    lineCounter.linePos(node?.range?.[0] ?? 0).line;
  visit(doc, {
    Alias(_, node) {
      refused = invalid(lineOf(node), "invalid yaml: aliases (*name) are not supported");
      return visit.BREAK;
    },
    Pair(_, pair) {
      if (isScalar(pair.key)) return undefined;
      refused = invalid(
        lineOf((pair.key ?? pair.value) as Node | null),
        "invalid yaml: keys must be plain names",
      );
      return visit.BREAK;
    },
  });
  if (refused) throw refused;

  const data: unknown = doc.toJS() ?? {};
  const schema = configSchema(path.dirname(file));
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  // A misspelt key also makes the key it was meant to be "missing": the typo is the cause to show.
  const issue = result.error.issues.find((i) => i.code === "unrecognized_keys") ?? result.error.issues[0]!;
  if (issue.code === "unrecognized_keys") {
    const unknown = issue.keys[0]!;
    const issuePath = [...issue.path, unknown];
    const known = knownKeys(schema, issue.path);
    const guess = closest(unknown, known);
    throw invalid(
      locate(doc, lineCounter, issuePath).line,
      `${quote(keyName(issuePath))}: unknown key${guess ? ` (did you mean ${quote(guess)}?)` : ""}, expected one of ${known.join(", ")}`,
    );
  }
  let located = locate(doc, lineCounter, issue.path);
  // A check across keys (cross-checks.ts) passes its issue in params.
  let cross = issue.code === "custom" ? (issue.params as CrossIssue | undefined) : undefined;
  // A clash of two keys is reported at the one the file writes, when the other is a default.
  if (located.found === undefined && cross?.other) {
    const other = locate(doc, lineCounter, cross.other.path);
    if (other.found !== undefined) {
      located = other;
      cross = cross.other;
    }
  }
  const { line } = located;
  const issuePath = cross?.path ?? issue.path;
  const expected = cross?.expected ?? describeIssue(issue);
  // For a bad key of a mapping (banTimes), what was found is the key itself, not its value; for a
  // key the file leaves out that a check across keys is about, the default in effect.
  const found =
    issue.code === "invalid_key"
      ? quote(String(issue.path.at(-1)))
      : (located.found ?? (cross ? `the default ${quote(cross.value)}` : undefined));
  const key = issuePath.length > 0 ? keyName(issuePath) : "(top level)";
  if (found === undefined) throw invalid(line, `${quote(key)}: missing, expected ${expected}`);
  throw invalid(line, `${quote(key)}: expected ${expected}, found ${found}`);
}

/**
 * The line of the deepest node on the path that exists, and a description of the value at the full
 * path (undefined when there is none).
 */
function locate(doc: YamlDocument, counter: LineCounter, issuePath: readonly PropertyKey[]) {
  let node: unknown = doc.contents;
  let offset = (node as { range?: [number, number, number] } | null)?.range?.[0] ?? 0;
  let found: string | undefined = describeNode(node);
  for (const step of issuePath) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === step);
      if (!pair) {
        found = undefined;
        break;
      }
      offset = (pair.key as { range?: [number, number, number] }).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof step === "number" && step < node.items.length) {
      node = node.items[step];
      offset = (node as { range?: [number, number, number] }).range?.[0] ?? offset;
    } else {
      found = undefined;
      break;
    }
    found = describeNode(node);
  }
  return { line: counter.linePos(offset).line, found };
}

function describeNode(node: unknown): string | undefined {
  if (node === null || node === undefined) return "an empty value";
  if (isScalar(node)) {
    if (node.value === null) return "an empty value";
    return typeof node.value === "string" ? quote(node.value) : String(node.value);
  }
  if (isSeq(node)) return node.items.length === 0 ? "an empty list" : "a list";
  if (isMap(node)) return "a mapping";
  if (isAlias(node)) return "an alias";
  return "a value";
}
