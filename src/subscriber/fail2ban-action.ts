import { type BanExecutor, timedExecutor } from "../fail2ban/executor.js";
import { BanQueue } from "../fail2ban/queue.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import type { Action, ActionRequest } from "./action.js";
import { QueuedAction } from "./queued-action.js";

/**
 * Bans and unbans through fail2ban, batched per jail (`set <jail> banip ip…`), at most two calls
 * in flight, from a bounded queue; through fail2ban-client itself or the root ban-helper.
 */
export function fail2banAction(
  executor: BanExecutor,
  batchSize: number,
  logger: Logger,
  metrics: Metrics,
): Action {
  const log = logger.child({ component: "fail2ban" });
  const timed = timedExecutor(executor, (seconds) =>
    metrics.observe("fail2ban_call_duration_seconds", seconds),
  );
  const queue = new BanQueue<ActionRequest>(timed, {
    batchSize,
    concurrency: 2,
    onDone: (batch, count) => {
      metrics.inc("bans_applied_total", { kind: batch.kind }, batch.ips.length);
      log.info(
        { kind: batch.kind, jail: batch.jail, ips: batch.ips, changed: count },
        `${batch.kind} applied`,
      );
    },
    onError: (error, batch) => {
      metrics.inc("action_failures_total", { kind: batch.kind }, batch.ips.length);
      log.error(
        { kind: batch.kind, jail: batch.jail, ips: batch.ips, err: (error as Error).message },
        `${batch.kind} failed`,
      );
    },
  });
  return new QueuedAction(queue, "fail2ban", log, metrics);
}
