/**
 * The ban-helper's line protocol, shared by the root helper and its clients. A request is one line,
 * one per connection: `BAN <jail> <ip> [<ip>…]\n` or `UNBAN <jail> <ip> [<ip>…]\n`, printable ASCII
 * with single spaces, at most MAX_LINE_BYTES including the newline and MAX_ADDRESSES addresses.
 * The answer is one line: `OK <n>` (n addresses newly changed) or `ERR <reason>`.
 */
export const MAX_LINE_BYTES = 4096;
export const MAX_ADDRESSES = 100;

export type HelperVerb = "BAN" | "UNBAN";

export type HelperReply = { ok: true; count: number } | { ok: false; reason: string };

export function formatRequest(verb: HelperVerb, jail: string, ips: readonly string[]): string {
  return `${verb} ${jail} ${ips.join(" ")}\n`;
}

/** Parses the helper's answer line (without its newline); anything unexpected is an error reply. */
export function parseReply(line: string): HelperReply {
  const ok = /^OK (0|[1-9]\d{0,5})$/.exec(line);
  if (ok) return { ok: true, count: Number(ok[1]) };
  const err = /^ERR ([ -~]{1,200})$/.exec(line);
  if (err) return { ok: false, reason: err[1]! };
  return { ok: false, reason: "unexpected reply from the ban-helper" };
}
