import { pino } from "pino";
import type { Logger } from "../../src/logging.js";

/** Generous: two shared cores and other suites running; every wait ends as soon as its condition holds. */
export const DEADLINE_MS = 20_000;

export interface LogLine {
  level: number;
  msg: string;
  /** Event id, on "event queued" and delivery lines. */
  id?: string;
  [field: string]: unknown;
}

/** A pino logger whose JSON lines are kept, parsed, for assertions on what an operator would read. */
export function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: "debug" },
    { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) },
  );
  return { logger, lines };
}
