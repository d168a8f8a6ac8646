import { F2bzError, quote } from "../errors.js";
import type { PublicIdentity } from "./identity.js";
import { keyHex, loadPinnedKey } from "./store.js";

/**
 * The publishers of a daemon's config with their pinned keys loaded. The key (hex) also names each
 * publisher in the state files, where an endpoint would change with a config edit; so two entries
 * pinning one key are refused: they would share one queue or sequence.
 */
export async function loadPinnedPublishers<T extends { key: string }>(
  section: string,
  list: readonly T[],
): Promise<(T & { identity: PublicIdentity; name: string })[]> {
  const publishers = await Promise.all(
    list.map(async (p) => {
      const identity = await loadPinnedKey(p.key);
      return { ...p, identity, name: keyHex(identity.curvePublic) };
    }),
  );
  for (const [i, p] of publishers.entries()) {
    const twin = publishers.findIndex((q) => q.name === p.name);
    if (twin !== i) {
      throw new F2bzError(
        "CONFIG_INVALID",
        `${section}.publishers[${i}] pins the same key as ${section}.publishers[${twin}] (${quote(p.key)}): list each publisher once`,
      );
    }
  }
  return publishers;
}
