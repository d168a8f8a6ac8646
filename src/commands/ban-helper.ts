import { cachedIgnoreList } from "../ban-helper/ignore-list.js";
import { hostAwareNeverBan } from "../ban-helper/never-ban.js";
import { BanHelperServer } from "../ban-helper/server.js";
import { resolveGroup, systemdListenFd } from "../ban-helper/system.js";
import { Fail2banClient } from "../fail2ban/client.js";
import { timedExecutor } from "../fail2ban/executor.js";
import { Metrics } from "../metrics/registry.js";
import { type Command, configOption } from "./command.js";
import { runDaemon } from "./daemon.js";

export const banHelper: Command = {
  name: "ban-helper",
  summary: "run the root ban-helper: BAN/UNBAN lines from a unix socket, re-validated, to fail2ban",
  usage: "f2bz ban-helper [--config FILE]",
  help: [
    "Runs in the foreground until SIGTERM/SIGINT. Reads the banHelper section of the config: the socket",
    "(created 0660, group banHelper.group; or passed by systemd socket activation), the allowed jails,",
    "the never-ban list and the state directory. Each connection sends one line, 'BAN <jail> <ip>…' or",
    "'UNBAN <jail> <ip>…', and gets 'OK <n>' or 'ERR <reason>'; an UNBAN lifts only what it banned.",
    "It is the only f2bz process that runs as root.",
  ],
  options: configOption,
  run: (ctx) =>
    runDaemon(ctx, "banHelper", async (config, logger) => {
      const section = config.banHelper;
      const neverBan = hostAwareNeverBan(section.neverBan, logger);
      const client = new Fail2banClient({ client: section.client, timeoutMs: section.timeout });
      // Socket activation is read here, at the edge; the socket unit then owns path, mode and group.
      const fd = systemdListenFd(ctx.env, process.pid);
      const gid =
        fd === undefined && section.group !== undefined ? await resolveGroup(section.group) : undefined;
      const metrics = new Metrics("ban-helper");
      const record = (seconds: number) => metrics.observe("fail2ban_call_duration_seconds", seconds);
      const server = await BanHelperServer.listen({
        stateDir: section.stateDir,
        banned: (jail) => client.banned(jail),
        socket: section.socket,
        ...(fd === undefined ? {} : { fd }),
        ...(gid === undefined ? {} : { gid }),
        executor: timedExecutor(client, record),
        metrics,
        ignoreList: cachedIgnoreList(client),
        jails: section.jails,
        neverBan: neverBan.list,
        logger,
      }).catch((error: unknown) => {
        neverBan.close();
        throw error;
      });
      // Not fatal: fail2ban may start after the helper. Tells the operator early about a missing jail.
      void client.jails().then(
        (running) => {
          const missing = section.jails.filter((j) => !running.includes(j));
          if (missing.length > 0) logger.warn({ missing }, "allowed jails are not running in fail2ban");
        },
        (error: unknown) => logger.warn({ err: (error as Error).message }, "fail2ban does not answer yet"),
      );
      return {
        metrics,
        close: async () => {
          neverBan.close();
          await server.close();
        },
      };
    }),
};
