import type { SubscriberConfig } from "../config/schema.js";
import { Fail2banClient } from "../fail2ban/client.js";
import type { BanExecutor } from "../fail2ban/executor.js";
import { BanHelperClient } from "../fail2ban/helper-client.js";
import { formatRequest } from "../fail2ban/helper-protocol.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { type Action, type ActionRequest, LogAction } from "./action.js";
import { ExecAction, expandTemplate } from "./exec-action.js";
import { fail2banAction } from "./fail2ban-action.js";

/** The configured action; with `dryRun`, a log line per event saying what it would have run. */
export function createAction(settings: SubscriberConfig, logger: Logger, metrics: Metrics): Action {
  const a = settings.action;
  const log = logger.child({ component: "action" });
  if (a.dryRun) {
    const dry = log.child({ dryRun: true });
    const message = `dry-run: would ${a.type}`;
    if (a.type === "exec") {
      const command = a.command!;
      return new LogAction(dry, message, (r) => ({ would: expandTemplate(command, r) }));
    }
    if (a.type === "log") return new LogAction(dry, message, () => ({}));
    const verb = (r: ActionRequest) => (r.kind === "ban" ? "banip" : "unbanip");
    if (a.helper) {
      const helper = a.helper;
      return new LogAction(dry, message, (r) => ({
        helper,
        would: formatRequest(r.kind === "ban" ? "BAN" : "UNBAN", r.jail, [r.ip]).trimEnd(),
      }));
    }
    return new LogAction(dry, message, (r) => ({ would: [a.client, "set", r.jail, verb(r), r.ip] }));
  }
  if (a.type === "log") return new LogAction(log, "cluster event");
  if (a.type === "exec") return new ExecAction(a.command!, { timeoutMs: a.timeout }, log, metrics);
  const executor: BanExecutor = a.helper
    ? new BanHelperClient(a.helper, { timeoutMs: a.timeout + 5_000 })
    : new Fail2banClient({ client: a.client, timeoutMs: a.timeout, batchSize: a.batchSize });
  return fail2banAction(executor, a.batchSize, logger, metrics);
}
