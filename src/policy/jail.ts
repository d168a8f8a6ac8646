/**
 * A jail name travels from a signed event to `fail2ban-client set <jail> banip`: only names that
 * can be neither an option ("-x"), nor several argv words, nor shell or path syntax. fail2ban's
 * iptables actions name chains `f2b-<jail>` and chain names stop near 28 characters, so the
 * local allowlist of a subscriber may well be stricter than this.
 */
export const JAIL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;

export function isValidJail(name: string): boolean {
  // Untrusted: checked for its type too, since it may come straight out of JSON.
  return typeof name === "string" && JAIL_PATTERN.test(name);
}
