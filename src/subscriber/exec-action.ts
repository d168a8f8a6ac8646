import { execFile } from "node:child_process";
import { templateProblem } from "../config/exec-template.js";
import { F2bzError, quote } from "../errors.js";
import { BanQueue } from "../fail2ban/queue.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import type { ActionRequest } from "./action.js";
import { QueuedAction } from "./queued-action.js";

const PLACEHOLDER = /\{(kind|jail|ip|origin|expires)\}/g;

/**
 * Runs an argv template per event, without a shell: `["/usr/local/bin/block", "{kind}", "{ip}"]`.
 * Placeholders are replaced inside each argument; values are validated event fields (canonical ip,
 * jail pattern, hex origin), and an argument can never split into two: one template element is
 * one argv element, whatever the values contain.
 */
export function expandTemplate(template: readonly string[], request: ActionRequest): string[] {
  const values: Record<string, string> = {
    kind: request.kind,
    jail: request.jail,
    ip: request.ip,
    origin: request.origin,
    expires: String(Math.floor(request.expires / 1000)),
  };
  return template.map((arg) => arg.replace(PLACEHOLDER, (_, name: string) => values[name]!));
}

/**
 * The schema refuses a bad template with file and line (config/exec-template.ts); this guards the
 * class when it is built from anything else.
 */
export function checkTemplate(template: readonly string[]): void {
  const problem = templateProblem(template);
  if (problem) {
    throw new F2bzError(
      "CONFIG_INVALID",
      `action.command[${problem.index}] ${quote(template[problem.index] ?? "")} is invalid, expected ${problem.expected}`,
    );
  }
}

export interface ExecActionOptions {
  timeoutMs: number;
  /** Commands at once, 1 or 2 (default 2). */
  concurrency?: number;
  /** Requests waiting (default 10 000); more are dropped, counted and logged. */
  maxPending?: number;
}

/**
 * The `exec` action: one command per request, through the queue the fail2ban action uses (one
 * address per call), so for one jail and address commands run in the order the requests came and
 * never two at once: an unban cannot overtake its ban.
 */
export class ExecAction extends QueuedAction {
  constructor(template: readonly string[], options: ExecActionOptions, logger: Logger, metrics: Metrics) {
    checkTemplate(template);
    const queue = new BanQueue<ActionRequest>((batch) => runAll(template, options.timeoutMs, batch.items), {
      batchSize: 1,
      concurrency: options.concurrency ?? 2,
      maxPending: options.maxPending ?? 10_000,
      onDone: (batch) => {
        metrics.inc("bans_applied_total", { kind: batch.kind }, batch.items.length);
        for (const r of batch.items)
          logger.info({ kind: r.kind, jail: r.jail, ip: r.ip }, `${r.kind} applied`);
      },
      onError: (error, batch) => {
        metrics.inc("action_failures_total", { kind: batch.kind }, batch.items.length);
        const e = error as NodeJS.ErrnoException & { killed?: boolean };
        const why = e.killed ? `killed after ${options.timeoutMs} ms` : e.message.split("\n")[0];
        for (const r of batch.items)
          logger.error({ kind: r.kind, jail: r.jail, ip: r.ip, err: why }, "exec action failed");
      },
    });
    super(queue, "exec", logger, metrics);
  }
}

/** Runs the command of each request in turn (a batch holds one); resolves with how many ran. */
async function runAll(template: readonly string[], timeoutMs: number, requests: readonly ActionRequest[]) {
  for (const request of requests) await run(expandTemplate(template, request), timeoutMs);
  return requests.length;
}

function run([file, ...args]: string[], timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    execFile(
      file!,
      args,
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 65_536, shell: false, cwd: "/" },
      (error) => (error ? reject(error) : resolve()),
    );
  });
}
