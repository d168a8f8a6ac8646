import { execFile } from "node:child_process";
import { templateProblem } from "../config/exec-template.js";
import { F2bzError, quote } from "../errors.js";
import type { Counters, Logger } from "../logging.js";
import { RateLimitedLog } from "../logging.js";
import type { Action, ActionRequest } from "./action.js";

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
  /** Commands at once (default 2). */
  concurrency?: number;
  /** Requests waiting (default 10 000); more are dropped, counted and logged. */
  maxPending?: number;
}

/**
 * The `exec` action. Requests queue (bounded) and run at most `concurrency` at a time; for one jail
 * and address they run in the order they came and never two at once, so an unban cannot overtake
 * its ban.
 */
export class ExecAction implements Action {
  private readonly waiting: ActionRequest[] = [];
  private readonly busy = new Set<string>();
  private running = 0;
  private readonly idle: (() => void)[] = [];
  private readonly concurrency: number;
  private readonly maxPending: number;
  private readonly dropLog = new RateLimitedLog(60_000, 3);

  constructor(
    private readonly template: readonly string[],
    private readonly options: ExecActionOptions,
    private readonly logger: Logger,
    private readonly counters: Counters,
  ) {
    checkTemplate(template);
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    this.maxPending = Math.max(1, options.maxPending ?? 10_000);
  }

  async apply(requests: readonly ActionRequest[]): Promise<void> {
    for (const r of requests) {
      if (this.waiting.length >= this.maxPending) {
        this.counters.inc(`action.dropped.${r.kind}`);
        const suppressed = this.dropLog.allow("full");
        if (suppressed !== undefined) {
          this.logger.error({ kind: r.kind, jail: r.jail, ip: r.ip, suppressed }, "exec queue full: dropped");
        }
        continue;
      }
      this.waiting.push(r);
      this.pump();
    }
  }

  /** Waits for what is queued and running. */
  close(): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private pump(): void {
    while (this.running < this.concurrency) {
      const blocked = new Set(this.busy);
      const index = this.waiting.findIndex((r) => {
        const key = `${r.jail} ${r.ip}`;
        if (blocked.has(key)) return false;
        blocked.add(key); // later requests for this key wait behind this one
        return true;
      });
      if (index === -1) break;
      const [request] = this.waiting.splice(index, 1);
      this.start(request!);
    }
    if (this.running === 0 && this.waiting.length === 0) for (const resolve of this.idle.splice(0)) resolve();
  }

  private start(request: ActionRequest): void {
    const key = `${request.jail} ${request.ip}`;
    this.busy.add(key);
    this.running++;
    void this.run(request).finally(() => {
      this.busy.delete(key);
      this.running--;
      this.pump();
    });
  }

  private async run(request: ActionRequest): Promise<void> {
    const [file, ...args] = expandTemplate(this.template, request);
    const fields = { kind: request.kind, jail: request.jail, ip: request.ip };
    try {
      await new Promise<void>((resolve, reject) => {
        execFile(
          file!,
          args,
          {
            timeout: this.options.timeoutMs,
            killSignal: "SIGKILL",
            maxBuffer: 65_536,
            shell: false,
            cwd: "/",
          },
          (error) => (error ? reject(error) : resolve()),
        );
      });
      this.counters.inc(`applied.${request.kind}`);
      this.logger.info(fields, `${request.kind} applied`);
    } catch (error) {
      this.counters.inc(`action.failed.${request.kind}`);
      const e = error as NodeJS.ErrnoException & { killed?: boolean };
      const why = e.killed ? `killed after ${this.options.timeoutMs} ms` : e.message.split("\n")[0];
      this.logger.error({ ...fields, err: why }, "exec action failed");
    }
  }
}
