import type { Fail2banClient } from "../fail2ban/client.js";
import { ignoreIpRanges, NeverBanList } from "../policy/never-ban.js";

export const IGNORE_TTL_MS = 60_000;

/**
 * Each jail's ignoreip, read from fail2ban at most once a minute per jail. Entries that are not
 * addresses or ranges (host names, `file:` lists) cannot be matched here and are left out.
 */
export function cachedIgnoreList(client: Fail2banClient): (jail: string) => Promise<NeverBanList> {
  const cache = new Map<string, { at: number; list: Promise<NeverBanList> }>();
  return (jail) => {
    const hit = cache.get(jail);
    if (hit && Date.now() - hit.at < IGNORE_TTL_MS) return hit.list;
    const list = client
      .ignoreIp(jail)
      .then((entries) => NeverBanList.create({ entries: ignoreIpRanges(entries) }));
    cache.set(jail, { at: Date.now(), list });
    list.catch(() => cache.delete(jail));
    return list;
  };
}
