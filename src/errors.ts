import { quoteText } from "./toolkit/escape.js";

/**
 * The one error type of f2bz. `code` is stable (scripts and tests match on it); `message` is one
 * lowercase line that quotes the offending value and says what was expected.
 */
export type ErrorCode =
  | "USAGE"
  | "CONFIG_NOT_FOUND"
  | "CONFIG_INVALID"
  | "KEY_NOT_FOUND"
  | "KEY_INVALID"
  | "KEY_PERMISSIONS"
  | "KEY_EXISTS"
  | "KEY_DUPLICATE"
  | "USER_UNKNOWN"
  | "IO_FAILED"
  | "STATE_INVALID"
  | "CURVE_UNAVAILABLE"
  | "BIND_FAILED"
  | "MESSAGE_REJECTED"
  | "FAIL2BAN_FAILED"
  | "DEMO_FAILED"
  | "INTERNAL";

export class F2bzError extends Error {
  override readonly name = "F2bzError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Exit codes follow sysexits(3) so that service managers and scripts can tell failures apart. */
const EXIT_CODES: Record<ErrorCode, number> = {
  USAGE: 64,
  CONFIG_NOT_FOUND: 66,
  CONFIG_INVALID: 78,
  KEY_NOT_FOUND: 66,
  KEY_INVALID: 65,
  KEY_PERMISSIONS: 77,
  KEY_EXISTS: 73,
  KEY_DUPLICATE: 65,
  USER_UNKNOWN: 67,
  IO_FAILED: 74,
  STATE_INVALID: 65,
  CURVE_UNAVAILABLE: 69,
  BIND_FAILED: 69,
  MESSAGE_REJECTED: 65,
  FAIL2BAN_FAILED: 69,
  DEMO_FAILED: 1,
  INTERNAL: 70,
};

export function exitCodeFor(error: unknown): number {
  return error instanceof F2bzError ? EXIT_CODES[error.code] : EXIT_CODES.INTERNAL;
}

/** Quotes an untrusted value for a one-line message: escapes control characters, truncates. */
export function quote(value: unknown, max = 120): string {
  return quoteText(typeof value === "string" ? value : String(value), max);
}
