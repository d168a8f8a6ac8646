/**
 * Why an input was dropped, with a one-line description (for `status` and metrics help texts).
 * The keys are stable: they label the drop counters (`f2bz_events_dropped_total{reason}`) of every process, the
 * publisher's `nack` replies and the tests. Add reasons, never rename one.
 */
export const REJECT_REASON_TEXT = {
  frames: "wrong frame count or unknown topic",
  size: "a frame over its size limit",
  encoding: "not valid utf-8",
  schema: "not the exact schema: malformed json, unknown or missing keys, wrong types, non-canonical bytes",
  version: "a protocol version this build does not speak",
  signature: "a bad, missing or wrong-length signature",
  "origin-mismatch": "the origin is not the node id derived from the signing key",
  stale: "older than the acceptance window",
  future: "further in the future than the allowed clock skew",
  replay: "an event id already seen",
  unauthorized: "signed by a key that is not an authorized monitor, or is revoked",
  "never-ban": "targets an address on the never-ban list",
  "rate-limited": "over an origin's or the global rate limit",
  echo: "this node's own event coming back",
  cidr: "a range where only single hosts are allowed",
  jail: "an invalid or not allowed jail name",
  ip: "an invalid or non-canonical address",
  busy: "the receiver cannot take it now (queue or seen-cache full); retry later",
  "origin-limit": "a new ban from an origin that already holds publisher.maxActivePerOrigin active bans",
} as const;

export type RejectReason = keyof typeof REJECT_REASON_TEXT;

export const REJECT_REASONS = Object.keys(REJECT_REASON_TEXT) as readonly RejectReason[];

export function isRejectReason(value: string): value is RejectReason {
  return Object.hasOwn(REJECT_REASON_TEXT, value);
}
