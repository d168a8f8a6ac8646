import { lookup } from "node:dns/promises";
import { F2bzError, quote } from "../errors.js";
import { networkOf, parseNetwork } from "./address.js";

/** The host of a tcp endpoint ("tcp://[2001:db8::1]:5680" → "2001:db8::1"); none for ipc or "*". */
export function hostOf(endpoint: string): string | undefined {
  const host = /^tcp:\/\/(?:\[([^\]]+)\]|([^:]+)):[^:]+$/.exec(endpoint);
  const name = host?.[1] ?? host?.[2];
  return name === undefined || name === "*" ? undefined : name;
}

export interface ResolvedEntries {
  /** Canonical addresses and networks, to add to a never-ban list. */
  entries: string[];
  /** Items that protect nothing (neither an address, a range nor a name that resolves). */
  unprotected: string[];
}

/**
 * Never-ban entries as they are written (publisher hosts, subscriber.peers, fail2ban's ignoreip):
 * addresses and ranges (any prefix) as they are; host names resolved now (again at each refresh).
 * An entry that protects nothing must not look as if it did: with `strict` (configuration) a
 * malformed one is an error naming `what`, otherwise (fail2ban's ignoreip, a name that does not
 * resolve) it is returned in `unprotected` for the caller to say so.
 */
export async function resolveEntries(
  items: readonly string[],
  what: string,
  strict = false,
): Promise<ResolvedEntries> {
  const out: ResolvedEntries = { entries: [], unprotected: [] };
  for (const item of items) {
    // `127.0.0.1/8` (host bits set) is how fail2ban's own ignoreip is often written.
    const network = networkOf(item);
    if (network !== undefined) {
      out.entries.push(network);
      continue;
    }
    const name = /^(?=.*[A-Za-z])[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(item);
    if (!name && strict) {
      const parsed = parseNetwork(item, { allowCidr: true, minPrefix: { 4: 0, 6: 0 } });
      const reason = parsed.ok ? "host bits set" : parsed.reason;
      throw new F2bzError("CONFIG_INVALID", `${what} ${quote(item)} is invalid (${reason})`);
    }
    if (name && (await resolve(item, out.entries))) continue;
    out.unprotected.push(item);
  }
  return out;
}

/** Adds the addresses `name` resolves to; false when it resolves to none. */
async function resolve(name: string, into: string[]): Promise<boolean> {
  try {
    const found = await lookup(name, { all: true });
    for (const r of found) {
      const address = parseNetwork(r.address);
      if (address.ok) into.push(address.ip);
    }
    return found.length > 0;
  } catch {
    return false;
  }
}
