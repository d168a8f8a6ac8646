import { type HelperVerb, MAX_ADDRESSES } from "../fail2ban/helper-protocol.js";
import { isValidJail } from "../policy/jail.js";
import { checkTarget, type NeverBanList } from "../policy/never-ban.js";

export interface RequestPolicy {
  /** The only jails that may be used; never empty (an empty list would let any jail through). */
  jails: ReadonlySet<string>;
  neverBan: NeverBanList;
}

export type CheckedRequest =
  | { ok: true; verb: HelperVerb; jail: string; ips: string[] }
  | { ok: false; reason: string };

/**
 * The helper's checklist for one request line (without its newline). The line comes from a local,
 * unprivileged and possibly compromised process; every step fails closed. What passes is a known
 * verb, an allowed jail and canonical single addresses outside the never-ban list, so fail2ban
 * (which takes any string, CIDRs included) only ever sees values that mean one host.
 * Reasons are short lowercase phrases; the only input they repeat is one escaped, truncated token.
 */
export function checkRequest(line: Buffer, policy: RequestPolicy): CheckedRequest {
  if (line.length === 0) return refuse("empty request");
  // Printable ASCII only: no tab, no CR, no NUL, no UTF-8 that could look like something else.
  for (const byte of line) if (byte < 0x20 || byte > 0x7e) return refuse("not printable ascii");
  const words = line.toString("latin1").split(" ");
  if (words.some((w) => w === "")) return refuse("malformed request, expected single spaces");
  const [verb, jail, ...addresses] = words;
  if (verb !== "BAN" && verb !== "UNBAN") return refuse(`unknown verb ${token(verb!)}`);
  if (jail === undefined) return refuse("missing jail");
  if (!isValidJail(jail)) return refuse(`invalid jail ${token(jail)}`);
  if (!policy.jails.has(jail)) return refuse(`jail not allowed ${token(jail)}`);
  if (addresses.length === 0) return refuse("missing address");
  if (addresses.length > MAX_ADDRESSES) return refuse(`too many addresses, at most ${MAX_ADDRESSES}`);
  const ips = new Set<string>();
  for (const address of addresses) {
    // No CIDRs: a compromised caller must not be able to ban a whole network through the helper.
    const checked = checkTarget(address, policy.neverBan, { allowCidr: false });
    if (!checked.ok) {
      const why = checked.reason === "never-ban" ? "never-ban address" : checked.reason;
      return refuse(`${why} ${token(address)}`);
    }
    ips.add(checked.ip);
  }
  return { ok: true, verb, jail, ips: [...ips] };
}

function refuse(reason: string): CheckedRequest {
  return { ok: false, reason };
}

/** One input token for a reply or a log line: quoted, quotes and backslashes escaped, truncated. */
export function token(text: string, max = 40): string {
  const cut = text.length > max ? `${text.slice(0, max)}...` : text;
  return `'${cut.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}
