import { lookup } from "node:dns/promises";
import type { SubscriberConfig } from "../config/schema.js";
import { F2bzError, quote } from "../errors.js";
import { Fail2banClient } from "../fail2ban/client.js";
import type { Logger } from "../logging.js";
import { networkOf, parseNetwork } from "../policy/address.js";

export interface LocalFail2ban {
  /** Jails that exist locally; undefined when unknown (through the ban-helper, or a dry run). */
  jails: Set<string> | undefined;
  ignoreIp: string[];
  refresh(): Promise<void>;
}

/**
 * What the subscriber learns from the local fail2ban: its jails and their ignoreip. Asked only by
 * a `fail2ban` action that runs fail2ban-client itself: a dry run never touches fail2ban, and
 * through the ban-helper the subscriber has no access to it (the helper has its own never-ban list).
 */
export async function localFail2ban(settings: SubscriberConfig, log: Logger): Promise<LocalFail2ban> {
  const a = settings.action;
  const state: LocalFail2ban = { jails: undefined, ignoreIp: [], refresh: async () => {} };
  if (a.type !== "fail2ban" || a.dryRun || a.helper) return state;
  const client = new Fail2banClient({ client: a.client, timeoutMs: a.timeout });
  state.refresh = async () => {
    const jails = new Set(await client.jails());
    const targets =
      a.jail === "same"
        ? [...jails]
        : [a.jail, a.fallbackJail].filter((j): j is string => j !== undefined && jails.has(j));
    const entries = new Set<string>();
    for (const jail of targets) for (const entry of await client.ignoreIp(jail)) entries.add(entry);
    state.ignoreIp = await resolveEntries([...entries], "ignoreip entry", log);
    state.jails = jails;
  };
  // Fail closed: without the jails' ignoreip, banip would ban addresses fail2ban is told to spare.
  await state.refresh();
  for (const jail of [a.jail === "same" ? undefined : a.jail, a.fallbackJail]) {
    if (jail !== undefined && !state.jails?.has(jail)) {
      log.warn({ jail, jails: [...(state.jails ?? [])] }, "configured jail does not exist in fail2ban (yet)");
    }
  }
  return state;
}

/** The host of a tcp endpoint ("tcp://[2001:db8::1]:5680" → "2001:db8::1"); none for ipc or "*". */
export function hostOf(endpoint: string): string | undefined {
  const host = /^tcp:\/\/(?:\[([^\]]+)\]|([^:]+)):[^:]+$/.exec(endpoint);
  const name = host?.[1] ?? host?.[2];
  return name === undefined || name === "*" ? undefined : name;
}

/**
 * Addresses and ranges (any prefix) as they are; host names resolved now (again at each refresh).
 * An entry that protects nothing must not look as if it did: with `strict` (configuration) a
 * malformed one is an error, otherwise (fail2ban's ignoreip, a name that does not resolve) it is
 * said in the log.
 */
export async function resolveEntries(
  items: readonly string[],
  what: string,
  log: Logger,
  strict = false,
): Promise<string[]> {
  const out: string[] = [];
  for (const item of items) {
    // `127.0.0.1/8` (host bits set) is how fail2ban's own ignoreip is often written.
    const network = networkOf(item);
    if (network !== undefined) {
      out.push(network);
      continue;
    }
    const name = /^(?=.*[A-Za-z])[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(item);
    if (!name && strict) {
      const parsed = parseNetwork(item, { allowCidr: true, minPrefix: { 4: 0, 6: 0 } });
      const reason = parsed.ok ? "host bits set" : parsed.reason;
      throw new F2bzError("CONFIG_INVALID", `${what} ${quote(item)} is invalid (${reason})`);
    }
    if (name) {
      try {
        const found = await lookup(item, { all: true });
        for (const r of found) {
          const address = parseNetwork(r.address);
          if (address.ok) out.push(address.ip);
        }
        if (found.length > 0) continue;
      } catch {
        // Reported below.
      }
    }
    log.warn({ entry: item }, `${what} is neither an address, a range nor a resolvable name: not protected`);
  }
  return out;
}
