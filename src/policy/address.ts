import net from "node:net";

/**
 * IP address parsing for everything that may end up as a `banip` argument. fail2ban's `banip` is
 * not a validation boundary (it takes raw strings and CIDRs and skips `ignoreip`, and `<ip>` reaches
 * action commands unescaped), so every address is parsed here into one canonical form before it is
 * signed, compared, stored or handed to fail2ban.
 */
export type AddressResult =
  | { ok: true; ip: string; family: 4 | 6; prefix: number }
  | { ok: false; reason: string };

/** Ranges shorter than these would ban whole providers; the cluster bans hosts, at most a /24 or /64. */
export const MIN_CIDR_PREFIX = { 4: 24, 6: 64 } as const;

/** The longest valid input ("ffff:…:255.255.255.255/128") has 49 characters. */
const MAX_INPUT_LENGTH = 64;
const ADDRESS_CHARS = /^[0-9A-Fa-f.:]+$/;
const PREFIX_DIGITS = /^(?:0|[1-9][0-9]{0,2})$/;
/** How Node renders an IPv4-mapped IPv6 address once canonical (`::FFFF:c000:0201` included). */
const MAPPED = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;

export interface NetworkOptions {
  allowCidr?: boolean;
  /** Shortest accepted prefix per family; never-ban entries use 0 (a broad never-ban range fails safe). */
  minPrefix?: { 4: number; 6: number };
}

/**
 * Parses an untrusted address: a single host, or (only with `allowCidr`) a CIDR of at least /24 or
 * /64 with zero host bits. The result's `ip` is canonical: lowercase, compressed IPv6, and an
 * IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as plain IPv4, as fail2ban itself does, so that one
 * host cannot slip past a never-ban check or a de-duplication under a second spelling.
 */
export function parseAddress(input: string, options: { allowCidr?: boolean } = {}): AddressResult {
  return parseNetwork(input, { allowCidr: options.allowCidr ?? false, minPrefix: MIN_CIDR_PREFIX });
}

/** `parseAddress` with a configurable minimum prefix, for never-ban entries such as 10.0.0.0/8. */
export function parseNetwork(input: string, options: NetworkOptions = {}): AddressResult {
  // Untrusted: may come from a peer, a log line or a socket; never assume the type or the length.
  if (typeof input !== "string") return fail("not a string");
  if (input.length === 0) return fail("empty");
  if (input.length > MAX_INPUT_LENGTH) return fail("too long");
  // net.isIP accepts zone ids ("fe80::1%eth0"); a zone id or bracket would reach fail2ban verbatim.
  if (input.includes("%")) return fail("zone id not allowed");
  if (input.includes("[") || input.includes("]")) return fail("brackets not allowed");
  if (/\s/.test(input)) return fail("whitespace not allowed");

  const slash = input.indexOf("/");
  const address = slash === -1 ? input : input.slice(0, slash);
  const prefixText = slash === -1 ? undefined : input.slice(slash + 1);
  if (prefixText !== undefined && !options.allowCidr) return fail("cidr not allowed");
  if (!ADDRESS_CHARS.test(address)) return fail("not an ip address");

  // net.isIP rejects "010.1.1.1", "1.2.3", "127.1", "0x7f.0.0.1" and any surrounding text.
  const isIp = net.isIP(address);
  if (isIp !== 4 && isIp !== 6) return fail("not an ip address");
  let canonical: string;
  try {
    canonical = new net.SocketAddress({ address, family: isIp === 4 ? "ipv4" : "ipv6" }).address;
  } catch {
    return fail("not an ip address");
  }
  let family: 4 | 6 = isIp;
  // A mapped address lives in the top 32 bits-of-128; its IPv4 prefix is the IPv6 one minus 96.
  let prefixOffset = 0;
  const mapped = family === 6 ? MAPPED.exec(canonical) : null;
  if (mapped) {
    canonical = mapped[1]!;
    family = 4;
    prefixOffset = 96;
  }

  const bits = family === 4 ? 32 : 128;
  if (prefixText === undefined) return { ok: true, ip: canonical, family, prefix: bits };

  if (!PREFIX_DIGITS.test(prefixText)) return fail("invalid prefix");
  const written = Number(prefixText);
  if (written > bits + prefixOffset) return fail("invalid prefix");
  // "::ffff:1.2.3.0/64": the 0xffff marker lies in the host part, so the host bits are not zero.
  if (written < prefixOffset) return fail("host bits set");
  const prefix = written - prefixOffset;
  if (prefix === 0 && (options.minPrefix?.[family] ?? 0) > 0) return fail("prefix /0 not allowed");
  if (prefix < (options.minPrefix?.[family] ?? 0)) return fail("prefix too short");
  if (!hostBitsZero(addressBits(canonical, family), bits, prefix)) return fail("host bits set");
  if (prefix === bits) return { ok: true, ip: canonical, family, prefix };
  return { ok: true, ip: `${canonical}/${prefix}`, family, prefix };
}

function fail(reason: string): AddressResult {
  return { ok: false, reason };
}

function hostBitsZero(value: bigint, bits: number, prefix: number): boolean {
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  return (value & hostMask) === 0n;
}

/** The address as an integer; only called on input that net.isIP has accepted. */
export function addressBits(address: string, family: 4 | 6): bigint {
  if (family === 4) return ipv4Bits(address);
  const [head = "", tail] = address.split("::");
  const groups = (part: string): string[] => (part === "" ? [] : part.split(":"));
  const expand = (parts: string[]): bigint[] =>
    parts.flatMap((g) => {
      if (!g.includes(".")) return [BigInt(`0x${g}`)];
      const v4 = ipv4Bits(g);
      return [v4 >> 16n, v4 & 0xffffn];
    });
  const left = expand(groups(head));
  const right = tail === undefined ? [] : expand(groups(tail));
  const words = [...left, ...new Array<bigint>(8 - left.length - right.length).fill(0n), ...right];
  return words.reduce((acc, w) => (acc << 16n) | w, 0n);
}

function ipv4Bits(address: string): bigint {
  return address.split(".").reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

/**
 * The network of a range written with host bits set (`127.0.0.1/8` → `127.0.0.0/8`), as fail2ban's
 * `ignoreip` allows; undefined when the input is not an address or a range.
 */
export function networkOf(input: string): string | undefined {
  const slash = input.indexOf("/");
  const host = parseAddress(slash < 0 ? input : input.slice(0, slash));
  if (!host.ok) return undefined;
  if (slash < 0) return host.ip;
  const text = input.slice(slash + 1);
  const prefix = Number(text);
  const width = host.family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(text) || prefix > width) return undefined;
  const mask = ((1n << BigInt(width)) - 1n) ^ ((1n << BigInt(width - prefix)) - 1n);
  const bits = addressBits(host.ip, host.family) & mask;
  const network =
    host.family === 4
      ? [24n, 16n, 8n, 0n].map((s) => String((bits >> s) & 0xffn)).join(".")
      : Array.from({ length: 8 }, (_, i) => ((bits >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(
          ":",
        );
  const canonical = parseAddress(network);
  return canonical.ok ? `${canonical.ip}/${prefix}` : undefined;
}
