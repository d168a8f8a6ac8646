import os from "node:os";
import { parseAddress } from "./address.js";

/**
 * This host's own addresses, canonical, for the never-ban list: a cluster ban of one of them would
 * cut the host off from its own services. The one impure function of the policy folder; the
 * interfaces are read when called (at startup or on reload), never cached here.
 */
export function hostAddresses(): string[] {
  const found = new Set<string>();
  for (const infos of Object.values(os.networkInterfaces())) {
    for (const info of infos ?? []) {
      // Node reports a link-local scope separately (`scopeid`), but be safe about a "%zone" suffix.
      const parsed = parseAddress(info.address.split("%")[0] ?? "");
      if (parsed.ok) found.add(parsed.ip);
    }
  }
  return [...found].sort();
}
