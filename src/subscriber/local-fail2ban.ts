import type { SubscriberConfig } from "../config/schema.js";
import { Fail2banClient } from "../fail2ban/client.js";
import type { Logger } from "../logging.js";
import { resolveEntries } from "../policy/never-ban-entries.js";

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
    state.ignoreIp = await protectedEntries([...entries], "ignoreip entry", log);
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

/** `resolveEntries`, saying in the log which items protect nothing. */
export async function protectedEntries(
  items: readonly string[],
  what: string,
  log: Logger,
  strict = false,
): Promise<string[]> {
  const { entries, unprotected } = await resolveEntries(items, what, strict);
  for (const entry of unprotected) {
    log.warn({ entry }, `${what} is neither an address, a range nor a resolvable name: not protected`);
  }
  return entries;
}
