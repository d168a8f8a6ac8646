/**
 * How long this node holds a ban: its expiry, but never later than `maxBanTimeMs` from now
 * (events.maxBanTime); an unban keeps its own. Threat: an origin (a bug, a skewed clock, or a
 * compromised monitor within its rights) sending an expiry years ahead would pin an address for
 * good. The publisher and every subscriber apply this same rule, so the publisher never holds (and
 * absorbs as already active) a ban the subscribers no longer enforce.
 */
export function heldUntil(
  event: { kind: "ban" | "unban"; expires: number },
  now: number,
  maxBanTimeMs: number,
): number {
  return event.kind === "ban" ? Math.min(event.expires, now + maxBanTimeMs) : event.expires;
}
