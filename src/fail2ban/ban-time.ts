/**
 * What fail2ban says about how long a ban lasts. Pure; never throws. Both inputs are untrusted
 * text: the client's answer is what a Python process printed, and a log line can be written by
 * anything that reaches the same file or journal unit.
 */

/** A jail's bantime in ms, or "permanent" for fail2ban's negative bantime (ban forever). */
export type Fail2banBanTime = number | "permanent";

/** The answer of `fail2ban-client get <jail> bantime`: whole seconds, `-1` meaning forever. */
export function parseBanTimeAnswer(answer: string): Fail2banBanTime | undefined {
  const m = /^(-?)(\d{1,12})$/.exec(answer.trim());
  if (!m) return undefined;
  if (m[1] === "-") return "permanent";
  const ms = Number(m[2]) * 1000;
  return ms > 0 ? ms : undefined;
}

export interface IncreaseBan {
  jail: string;
  /** As logged: validate before use. */
  ip: string;
  /** How many times fail2ban has banned this address (bantime.increment's ban count). */
  count: number;
  /** The prolonged ban's whole duration. */
  durationMs: number;
}

/**
 * fail2ban's `seconds2str`: units y (365 d), w, d, h, m, s, space separated, seconds possibly with
 * a fraction (`1h 30m`, `10s`, `1d 2.5s`).
 */
const UNIT_MS: Readonly<Record<string, number>> = {
  y: 365 * 86_400_000,
  w: 7 * 86_400_000,
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1000,
};

function parseSeconds2str(text: string): number | undefined {
  let total = 0;
  for (const part of text.split(" ")) {
    const m = /^(\d{1,9}(?:\.\d{1,6})?)([ywdhms])$/.exec(part);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return total > 0 && Number.isFinite(total) ? Math.round(total) : undefined;
}

/**
 * `[jail] Increase Ban <ip> (<count> # <duration> -> <end>)`, written by fail2ban's observer
 * (0.11+, bantime.increment) at NOTICE. Only the message part is read (`raw` ends with it); the
 * shape is exact so that a crafted line cannot pass a duration through something else.
 *
 * fail2ban logs it AFTER the `Ban` line of the same ban (research/fail2ban-lab-findings.md,
 * "Ban time increment"): the duration prolongs a ban already signed, it cannot set its first expiry.
 */
export function parseIncreaseBan(raw: string): IncreaseBan | undefined {
  const m =
    /(?:^|[:\s])\[([^\]\s]{1,64})\] Increase Ban (\S{1,64}) \((\d{1,9}) # ([0-9ywdhms. ]{1,64}) -> \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)$/.exec(
      raw.replace(/\r?\n$/, ""),
    );
  if (!m) return undefined;
  const durationMs = parseSeconds2str(m[4]!);
  if (durationMs === undefined) return undefined;
  return { jail: m[1]!, ip: m[2]!, count: Number(m[3]), durationMs };
}
