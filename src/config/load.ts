import { promises as fs } from "node:fs";
import path from "node:path";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { z } from "zod";
import { F2bzError, quote } from "../errors.js";
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

export function parseConfig(text: string, file: string): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const line = yamlError.linePos?.[0].line ?? lineCounter.linePos(yamlError.pos[0]).line;
    const reason = yamlError.message.split("\n")[0]!.replace(/ at line \d+.*$/, "");
    throw new F2bzError("CONFIG_INVALID", `config ${quote(file)} line ${line}: invalid yaml: ${reason}`);
  }
  const data: unknown = doc.toJS({ maxAliasCount: 0 }) ?? {};
  const result = configSchema(path.dirname(file)).safeParse(data);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const issuePath = issue.code === "unrecognized_keys" ? [...issue.path, issue.keys[0]!] : issue.path;
  const { line, found } = locate(doc, lineCounter, issuePath);
  const key = issuePath.length > 0 ? issuePath.join(".") : "(top level)";
  throw new F2bzError(
    "CONFIG_INVALID",
    `config ${quote(file)} line ${line}: ${quote(key)}: ${describeIssue(issue)}, found ${found}`,
  );
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "unrecognized_keys":
      return "unknown key, expected one of the documented keys";
    case "invalid_type":
      return issue.input === undefined ? `missing, expected ${issue.expected}` : `expected ${issue.expected}`;
    case "invalid_value":
      return `expected one of ${issue.values.map((v) => quote(v)).join(", ")}`;
    case "too_small":
      return `expected at least ${issue.minimum}${issue.origin === "array" ? " entries" : ""}`;
    case "too_big":
      return `expected at most ${issue.maximum}${issue.origin === "array" ? " entries" : ""}`;
    default:
      return issue.message.replace(/^Invalid input: /, "").replace(/^./, (c) => c.toLowerCase());
  }
}

type YamlDocument = ReturnType<typeof parseDocument>;

/** The line of the deepest node on the path that exists, and the value found at the full path. */
function locate(doc: YamlDocument, counter: LineCounter, issuePath: readonly PropertyKey[]) {
  let node: unknown = doc.contents;
  let offset = 0;
  for (const step of issuePath) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === step);
      if (!pair) break;
      offset = (pair.key as { range?: [number, number, number] }).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof step === "number" && step < node.items.length) {
      node = node.items[step];
      offset = (node as { range?: [number, number, number] }).range?.[0] ?? offset;
    } else {
      break;
    }
  }
  const value = doc.hasIn(issuePath as unknown[]) ? doc.getIn(issuePath as unknown[], true) : undefined;
  let found = "nothing";
  if (isScalar(value)) found = value.value === null ? "an empty value" : quote(String(value.value));
  else if (isSeq(value)) found = "a list";
  else if (isMap(value)) found = "a mapping";
  return { line: counter.linePos(offset).line, found };
}
