import { type Command, configOption } from "./command.js";
import { runDaemon } from "./daemon.js";

export const publisher: Command = {
  name: "publisher",
  summary: "run the publisher: verify, de-duplicate and fan out events, serve snapshots",
  usage: "f2bz publisher [--config FILE]",
  help: [
    "Reads 'node' and 'publisher' from the config. Binds 'submit' (monitors, ZAP domain submit),",
    "'feed' and 'snapshot' (subscribers, ZAP domain feed); authorizes keys from 'publisher.keys'.",
    "Runs in the foreground; SIGTERM/SIGINT stop it cleanly, SIGHUP reopens the log file.",
  ],
  options: configOption,
  run: (ctx) =>
    runDaemon(ctx, "publisher", async (config, logger) => {
      // Loaded on use: the root ban-helper shares this CLI and must never load network code.
      const { startPublisher } = await import("../publisher/daemon.js");
      const running = await startPublisher(config, logger);
      return {
        close: () => running.close(),
        fatal: running.fatal,
        metrics: running.metrics,
      };
    }),
};
