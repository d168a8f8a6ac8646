import { z } from "zod";
import { quote } from "../errors.js";

/**
 * Turns zod issues into the operator's words: what was expected, and for a misspelt key the
 * closest known one. Pure functions of the schema and the issue.
 */

/** `monitor.publishers[0].key`, as an operator would write the path. */
export const keyName = (keyPath: readonly PropertyKey[]) =>
  keyPath.map((s, i) => (typeof s === "number" ? `[${s}]` : `${i > 0 ? "." : ""}${String(s)}`)).join("");

export const lowerFirst = (text: string) => text.replace(/^./, (c) => c.toLowerCase());

const TYPE_NAMES: Record<string, string> = {
  string: "a string",
  number: "a number",
  boolean: "true or false",
  object: "a mapping",
  array: "a list",
  record: "a mapping",
};

/** What the schema expected, as a phrase that follows "expected". */
export function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "invalid_type":
      return TYPE_NAMES[issue.expected] ?? issue.expected;
    case "invalid_value":
      return `one of ${issue.values.map((v) => quote(v)).join(", ")}`;
    case "too_small":
      if (issue.origin === "array")
        return issue.minimum === 1 ? "at least one entry" : `at least ${issue.minimum} entries`;
      if (issue.origin === "string") return "a non-empty string";
      return `${issue.inclusive ? "at least" : "more than"} ${issue.minimum}`;
    case "too_big":
      return `at most ${issue.maximum}${issue.origin === "array" ? " entries" : ""}`;
    case "invalid_union": {
      const types = issue.errors.map((e) =>
        e.length === 1 && e[0]!.code === "invalid_type" ? e[0] : undefined,
      );
      if (types.every((t) => t !== undefined))
        return types.map((t) => TYPE_NAMES[t.expected] ?? t.expected).join(" or ");
      return "a value of another form";
    }
    case "invalid_key": {
      const inner = issue.issues[0];
      return inner ? stripExpected(inner.message) : "a valid key";
    }
    default:
      return stripExpected(issue.message);
  }
}

/** Messages of our own checks start with "expected"; zod's start with "Invalid …: ". */
const stripExpected = (message: string) =>
  lowerFirst(message.replace(/^Invalid [a-z ]*: /, "").replace(/^expected /, ""));

/** The keys an object at `objectPath` of the schema accepts. */
export function knownKeys(schema: z.ZodType, objectPath: readonly PropertyKey[]): string[] {
  let node: z.ZodType | undefined = unwrap(schema);
  for (const step of objectPath) {
    if (node instanceof z.ZodObject) {
      const child: z.ZodType | undefined = (node.shape as Record<PropertyKey, z.ZodType>)[step];
      node = child && unwrap(child);
    } else if (node instanceof z.ZodArray) node = unwrap(node.element as z.ZodType);
    else if (node instanceof z.ZodRecord) node = unwrap(node.valueType as z.ZodType);
    else node = undefined;
  }
  return node instanceof z.ZodObject ? Object.keys(node.shape) : [];
}

function unwrap(schema: z.ZodType): z.ZodType {
  let node = schema;
  for (;;) {
    if (
      node instanceof z.ZodOptional ||
      node instanceof z.ZodDefault ||
      node instanceof z.ZodPrefault ||
      node instanceof z.ZodNullable
    ) {
      node = node.unwrap() as z.ZodType;
    } else if (node instanceof z.ZodPipe) {
      node = node.in as z.ZodType;
    } else {
      return node;
    }
  }
}

/** The known key closest to a misspelt one, if it is close enough to be a plausible typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const d = distance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}
