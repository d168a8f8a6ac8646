import path from "node:path";

/** The fields an `exec` action's argv template may name: validated event fields only. */
export const PLACEHOLDER_NAMES = ["kind", "jail", "ip", "origin", "expires"] as const;

const ANY_PLACEHOLDER = /\{[A-Za-z_]+\}/g;
const HAS_PLACEHOLDER = /\{[A-Za-z_]+\}/;
const KNOWN = new Set<string>(PLACEHOLDER_NAMES.map((n) => `{${n}}`));

/**
 * What is wrong with an argv template, if anything: the index of the first bad element and what
 * was expected there. The program is an absolute path with no placeholder (an event must never
 * choose what runs, and no shell or PATH lookup is involved); an unknown placeholder would reach
 * the program verbatim, so it is refused at start, not at the first ban.
 */
export function templateProblem(
  template: readonly string[],
): { index: number; expected: string } | undefined {
  const [program] = template;
  if (program === undefined || !path.isAbsolute(program) || HAS_PLACEHOLDER.test(program)) {
    return { index: 0, expected: "the absolute path of a program, without placeholders" };
  }
  for (const [index, arg] of template.entries()) {
    for (const [found] of arg.matchAll(ANY_PLACEHOLDER)) {
      if (!KNOWN.has(found)) {
        return {
          index,
          expected: "only the placeholders {kind}, {jail}, {ip}, {origin} or {expires}",
        };
      }
    }
  }
  return undefined;
}
