import type { Logger } from "../logging.js";
import { HostAddressWatch, type HostAddressWatchOptions } from "../policy/host-addresses.js";
import { NeverBanList } from "../policy/never-ban.js";

/**
 * The helper's never-ban list: built-ins, banHelper.neverBan and this host's addresses, rebuilt
 * whenever those change (read again every minute), so a new address is protected without a restart.
 */
export function hostAwareNeverBan(
  entries: readonly string[],
  logger: Logger,
  watch: Omit<HostAddressWatchOptions, "onChange"> = {},
): { list: () => NeverBanList; close(): void } {
  const build = (host: readonly string[]) => NeverBanList.create({ entries, hostAddresses: host });
  const hosts = new HostAddressWatch({
    ...watch,
    onChange: (addresses) => {
      list = build(addresses);
      logger.info({ addresses }, "host addresses changed");
    },
  });
  let list = build(hosts.addresses);
  return { list: () => list, close: () => hosts.close() };
}
