/**
 * The one escaper of untrusted text (peer addresses, log lines, file names, submitted ids) on its
 * way into a log line or a one-line message. Threat: control characters and newlines in attacker
 * text forge log lines or rewrite a terminal; unbounded text floods the log. JSON's escapes turn
 * every control character, quote and backslash into visible ASCII; the cut bounds the length.
 */
export function escapeText(text: string, max: number, cutMark = "…"): string {
  const long = text.length > max;
  const escaped = JSON.stringify(long ? text.slice(0, max) : text).slice(1, -1);
  return long ? `${escaped}${cutMark}` : escaped;
}

/**
 * Escaped as `escapeText`, inside single quotes, a quote in the text escaped too. `cutMark` "..."
 * keeps a reply ASCII for a peer that reads latin1 (the ban-helper's).
 */
export function quoteText(text: string, max: number, cutMark = "…"): string {
  return `'${escapeText(text, max, cutMark).replaceAll("'", "\\'")}'`;
}
