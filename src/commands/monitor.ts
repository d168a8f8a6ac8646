import { type Command, configOption } from "./command.js";
import { runDaemon } from "./daemon.js";

export const monitor: Command = {
  name: "monitor",
  summary: "run the monitor: turn fail2ban's Ban/Unban lines into signed events for the publishers",
  usage: "f2bz monitor [--config FILE]",
  help: [
    "Reads 'node' and 'monitor' from the config. Tails monitor.log (or the journal with",
    "source: journald), signs each real Ban/Unban, keeps it in a durable outbox and delivers it",
    "to every publisher until acknowledged. The first run starts at the end of the log.",
    "Runs in the foreground; SIGTERM/SIGINT stop it cleanly, SIGHUP reopens the log file.",
  ],
  options: configOption,
  run: (ctx) =>
    runDaemon(ctx, "monitor", async (config, logger, signal) => {
      // Loaded on use: the root ban-helper shares this CLI and must never load network code.
      const { startMonitor } = await import("../monitor/daemon.js");
      const running = await startMonitor(config, logger, { signal });
      return {
        close: () => running.close(),
        metrics: running.metrics,
      };
    }),
};
