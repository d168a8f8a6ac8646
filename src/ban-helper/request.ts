import { type HelperVerb, MAX_ADDRESSES } from "../fail2ban/helper-protocol.js";
import type { LabelsOf } from "../metrics/catalogue.js";
import { isValidJail } from "../policy/jail.js";
import { checkTarget, type NeverBanList } from "../policy/never-ban.js";
import { quoteText } from "../toolkit/escape.js";

export interface RequestPolicy {
  /** The only jails that may be used; never empty (an empty list would let any jail through). */
  jails: ReadonlySet<string>;
  neverBan: NeverBanList;
}

export type CheckedRequest =
  | { ok: true; verb: HelperVerb; jail: string; ips: string[] }
  | { ok: false; code: Refusal; reason: string };

/** Why a request was refused: the label its refusal is counted under. */
export type Refusal = LabelsOf<"helper_requests_refused_total">["reason"];

/**
 * The helper's checklist for one request line (without its newline). The line comes from a local,
 * unprivileged and possibly compromised process; every step fails closed. What passes is a known
 * verb, an allowed jail and canonical single addresses outside the never-ban list, so fail2ban
 * (which takes any string, CIDRs included) only ever sees values that mean one host.
 * Reasons are short lowercase phrases; the only input they repeat is one escaped, truncated token.
 */
export function checkRequest(line: Buffer, policy: RequestPolicy): CheckedRequest {
  if (line.length === 0) return refuse("empty", "empty request");
  // Printable ASCII only: no tab, no CR, no NUL, no UTF-8 that could look like something else.
  for (const byte of line)
    if (byte < 0x20 || byte > 0x7e) return refuse("not-printable", "not printable ascii");
  const words = line.toString("latin1").split(" ");
  if (words.some((w) => w === "")) return refuse("malformed", "malformed request, expected single spaces");
  const [verb, jail, ...addresses] = words;
  if (verb !== "BAN" && verb !== "UNBAN") return refuse("unknown-verb", `unknown verb ${token(verb!)}`);
  if (jail === undefined) return refuse("missing-jail", "missing jail");
  if (!isValidJail(jail)) return refuse("invalid-jail", `invalid jail ${token(jail)}`);
  if (!policy.jails.has(jail)) return refuse("jail-not-allowed", `jail not allowed ${token(jail)}`);
  if (addresses.length === 0) return refuse("missing-address", "missing address");
  if (addresses.length > MAX_ADDRESSES)
    return refuse("too-many-addresses", `too many addresses, at most ${MAX_ADDRESSES}`);
  const ips = new Set<string>();
  for (const address of addresses) {
    // No CIDRs: a compromised caller must not be able to ban a whole network through the helper.
    const checked = checkTarget(address, policy.neverBan, { allowCidr: false });
    if (!checked.ok) {
      if (checked.reason === "never-ban") return refuse("never-ban", `never-ban address ${token(address)}`);
      return refuse("invalid-address", `${checked.reason} ${token(address)}`);
    }
    ips.add(checked.ip);
  }
  return { ok: true, verb, jail, ips: [...ips] };
}

function refuse(code: Refusal, reason: string): CheckedRequest {
  return { ok: false, code, reason };
}

/** One input token for a reply or a log line: quoted, escaped and truncated, in ASCII. */
export function token(text: string, max = 40): string {
  return quoteText(text, max, "...");
}
