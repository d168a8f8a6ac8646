import { resolveGroup } from "../ban-helper/system.js";
import { DEFAULT_CONFIG, loadConfig } from "../config/load.js";
import { configWarnings } from "../config/warnings.js";
import { F2bzError } from "../errors.js";
import { loadSecretIdentity } from "../keys/files.js";
import { loadPinnedPublishers } from "../keys/pinned.js";
import { loadEntries, loadKeySet } from "../keys/store.js";
import { type Command, configOption, configPath } from "./command.js";

export const checkConfig: Command = {
  name: "check-config",
  summary: "validate the config file and load every key it names, without starting anything",
  usage: "f2bz check-config [--config FILE]",
  help: [
    "Exits 0 when the file is valid and every key it names loads; otherwise prints one line and exits non-zero.",
    "A key directory that does not exist (publisher.keys, subscriber.origins) is a warning: exit 0.",
  ],
  options: configOption,
  async run(ctx) {
    const file = configPath(ctx, DEFAULT_CONFIG);
    const config = await loadConfig(file);
    const identity = await loadSecretIdentity(config.node.identity);
    const sections: string[] = [];
    if (config.publisher) {
      // Stricter than the publisher, which skips a bad entry: here every entry must load.
      const { set, skipped } = await loadKeySet(config.publisher.keys);
      if (skipped[0]) throw new F2bzError(skipped[0].code, skipped[0].reason);
      sections.push(
        `publisher (${set.monitors.length} monitors, ${set.subscribers.length} subscribers, ${set.revoked.length} revoked)`,
      );
    }
    if (config.monitor) {
      await loadPinnedPublishers("monitor", config.monitor.publishers);
      sections.push(`monitor (${config.monitor.publishers.length} publishers)`);
    }
    if (config.subscriber) {
      await loadPinnedPublishers("subscriber", config.subscriber.publishers);
      if (config.subscriber.origins) await loadEntries(config.subscriber.origins, { authorized: true });
      sections.push(
        `subscriber (${config.subscriber.publishers.length} publishers, action ${config.subscriber.action.type})`,
      );
    }
    if (config.banHelper) {
      // The same lookup as the helper's at start (which skips it when systemd passes the socket).
      if (config.banHelper.group !== undefined) await resolveGroup(config.banHelper.group);
      sections.push("ban-helper");
    }
    for (const { message } of await configWarnings(config, file)) ctx.stderr(`warning: ${message}`);
    ctx.stdout(
      `${file}: ok; node ${config.node.name} (${identity.nodeId}); ${sections.join(", ") || "no process sections"}`,
    );
    return 0;
  },
};
