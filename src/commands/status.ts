import { DEFAULT_CONFIG, loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { loadEntries, revokedDir, roleDir } from "../keys/store.js";
import { type Command, configOption, configPath } from "./command.js";

export const status: Command = {
  name: "status",
  summary: "show what the daemons of this node hold in their state files (read-only)",
  usage: "f2bz status [--config FILE] [--json]",
  help: [
    "Reads node.stateDir and, for each daemon whose state file exists, prints: publisher — active",
    "bans, its sequence number, seen event ids, the high-water mark of each origin; monitor — outbox",
    "size, events pending per publisher, log position; subscriber — applied bans and the next expiry,",
    "the last sequence number per publisher, the echo ledger. Opens nothing for writing, so it can",
    "run while the daemons do (as their user, or root: the state directory is 0700).",
    "Exits 0, also when a daemon has no state yet; 74 when a state file exists but cannot be read.",
    "  --json   machine-readable, times in unix milliseconds",
  ],
  options: { ...configOption, json: { type: "boolean" } },
  async run(ctx) {
    const config = await loadConfig(configPath(ctx, DEFAULT_CONFIG));
    // Loaded on use: better-sqlite3 is native code the other commands need not map.
    const { readStatus, DAEMONS } = await import("../status/read.js");
    const { formatStatus } = await import("../status/format.js");
    const report = await readStatus({
      node: config.node.name,
      stateDir: config.node.stateDir,
      now: Date.now(),
      configured: {
        ...(config.publisher ? { publisher: { originNames: await originNames(config.publisher.keys) } } : {}),
        ...(config.monitor
          ? { monitor: { publishers: config.monitor.publishers.map((p) => p.submit) } }
          : {}),
        ...(config.subscriber
          ? { subscriber: { feeds: config.subscriber.publishers.map((p) => p.feed) } }
          : {}),
      },
    });
    if (ctx.values.json === true) ctx.stdout(JSON.stringify(report, null, 2));
    else for (const line of formatStatus(report)) ctx.stdout(line);
    return DAEMONS.some((d) => report[d].state === "unreadable") ? 74 : 0;
  },
};

/**
 * Names for origin ids, from the publisher's monitor keys (revoked ones too: their events may still
 * be counted). Best effort: a key directory that cannot be read only costs the names.
 */
async function originNames(keysDir: NonNullable<Config["publisher"]>["keys"]): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  for (const dir of [revokedDir(keysDir), roleDir(keysDir, "monitor")]) {
    try {
      for (const entry of await loadEntries(dir)) names.set(entry.nodeId, entry.id);
    } catch {
      // Unreadable or a malformed file: no names from this directory.
    }
  }
  return names;
}
