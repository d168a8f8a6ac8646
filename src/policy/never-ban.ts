import net from "node:net";
import { F2bzError, quote } from "../errors.js";
import { type AddressResult, networkOf, parseAddress, parseNetwork } from "./address.js";

export { hostAddresses } from "./host-addresses.js";

/**
 * Addresses that are never banned, whatever a (possibly compromised) origin or publisher signs:
 * `set <jail> banip` bypasses fail2ban's own `ignoreip`, so a ban of 127.0.0.1, of a link-local
 * gateway or of this host's own address would otherwise lock the host out of itself.
 */
const BUILT_IN = [
  "0.0.0.0/8", // "this network"; 0.0.0.0 is the unspecified address
  "127.0.0.0/8", // loopback
  "169.254.0.0/16", // link-local
  "224.0.0.0/4", // multicast
  "240.0.0.0/4", // reserved, includes the broadcast address 255.255.255.255
  "::/128", // unspecified
  "::1/128", // loopback
  "fe80::/10", // link-local
  "ff00::/8", // multicast
] as const;
// ::ffff:0:0/96 (IPv4-mapped) needs no rule of its own: parseNetwork maps such an address to IPv4, so
// it meets the IPv4 rules above; and net.BlockList places an IPv4 rule inside ::ffff:0:0/96 when an
// IPv6 range is probed, so a v6 range that covers the mapped block overlaps 0.0.0.0/8 and 127/8.

interface Range {
  network: string;
  family: "ipv4" | "ipv6";
  prefix: number;
}

export class NeverBanList {
  private constructor(
    private readonly list: net.BlockList,
    private readonly ranges: readonly Range[],
  ) {}

  /**
   * `entries` come from configuration (addresses and CIDRs of any prefix length): an invalid one
   * is a configuration error, never silently skipped. `hostAddresses` are this host's own addresses.
   */
  static create(options: { entries?: readonly string[]; hostAddresses?: readonly string[] }): NeverBanList {
    const list = new net.BlockList();
    const ranges: Range[] = [];
    const add = (text: string, what: string): void => {
      const parsed = parseNetwork(text, { allowCidr: true, minPrefix: { 4: 0, 6: 0 } });
      if (!parsed.ok) {
        throw new F2bzError("CONFIG_INVALID", `${what} ${quote(text)} is invalid (${parsed.reason})`);
      }
      const range = toRange(parsed);
      list.addSubnet(range.network, range.prefix, range.family);
      ranges.push(range);
    };
    for (const cidr of BUILT_IN) add(cidr, "built-in never-ban range");
    for (const entry of options.entries ?? []) add(entry, "never-ban entry");
    for (const address of options.hostAddresses ?? []) add(address, "host address");
    return new NeverBanList(list, ranges);
  }

  /** True for a never-ban address, and (fail closed) for anything that is not a single address. */
  contains(ip: string): boolean {
    const parsed = parseAddress(ip);
    if (!parsed.ok) return true;
    return this.list.check(parsed.ip, parsed.family === 4 ? "ipv4" : "ipv6");
  }

  /**
   * True when a range shares at least one address with the list, and (fail closed) for anything that
   * is not an address or a CIDR. Two ranges overlap exactly when one contains the other's network
   * address, so both directions are probed.
   */
  overlaps(cidr: string): boolean {
    const parsed = parseNetwork(cidr, { allowCidr: true, minPrefix: { 4: 0, 6: 0 } });
    if (!parsed.ok) return true;
    const range = toRange(parsed);
    if (this.list.check(range.network, range.family)) return true;
    const probe = new net.BlockList();
    probe.addSubnet(range.network, range.prefix, range.family);
    return this.ranges.some((r) => probe.check(r.network, r.family));
  }
}

function toRange(parsed: Extract<AddressResult, { ok: true }>): Range {
  const slash = parsed.ip.indexOf("/");
  return {
    network: slash === -1 ? parsed.ip : parsed.ip.slice(0, slash),
    family: parsed.family === 4 ? "ipv4" : "ipv6",
    prefix: parsed.prefix,
  };
}

/**
 * The gate before anything is banned: an address (or, with `allowCidr`, a range) that parses and
 * touches no never-ban address. Untrusted input; the result's `ip` is the canonical form to use.
 */
export function checkTarget(
  input: string,
  list: NeverBanList,
  options: { allowCidr?: boolean } = {},
): AddressResult {
  const parsed = parseAddress(input, options);
  if (!parsed.ok) return parsed;
  const refused =
    parsed.prefix === (parsed.family === 4 ? 32 : 128) ? list.contains(parsed.ip) : list.overlaps(parsed.ip);
  return refused ? { ok: false, reason: "never-ban" } : parsed;
}

/**
 * fail2ban `ignoreip` entries as never-ban ranges: `127.0.0.1/8` becomes `127.0.0.0/8`; names and
 * `file:` lists cannot be matched by address and are left out.
 */
export function ignoreIpRanges(entries: readonly string[]): string[] {
  return entries.flatMap((entry) => {
    const range = networkOf(entry);
    return range === undefined ? [] : [range];
  });
}
