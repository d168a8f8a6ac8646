const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const DURATION = /^(\d{1,9})(ms|s|m|h|d|w)$/;

/** Parses `1h`, `30m`, `600s`, `250ms`, `7d`, or a bare number of seconds, into milliseconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && value >= 0 ? value * 1000 : undefined;
  }
  const match = DURATION.exec(value.trim());
  if (!match) return undefined;
  return Number(match[1]) * UNITS[match[2]!]!;
}
