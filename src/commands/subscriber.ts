import { type Command, configOption } from "./command.js";
import { runDaemon } from "./daemon.js";

export const subscriber: Command = {
  name: "subscriber",
  summary: "run the subscriber: verify events from the publishers and ban/unban locally",
  usage: "f2bz subscriber [--config FILE]",
  help: [
    "Reads 'node' and 'subscriber' from the config. Follows every publisher (pinned keys), fetches",
    "snapshots on start and on gaps, checks each event, applies it through the configured action",
    "(fail2ban, exec, log; dryRun logs only) and unbans applied bans when they expire.",
    "Runs in the foreground; SIGTERM/SIGINT stop it cleanly, SIGHUP reopens the log file.",
  ],
  options: configOption,
  run: (ctx) =>
    runDaemon(ctx, "subscriber", async (config, logger, signal) => {
      // Loaded on use: the root ban-helper shares this CLI and must never load network code.
      const { startSubscriber } = await import("../subscriber/daemon.js");
      return startSubscriber(config, logger, signal);
    }),
};
