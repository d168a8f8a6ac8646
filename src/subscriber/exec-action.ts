import { execFile } from "node:child_process";
import type { Logger } from "../logging.js";
import type { Action, ActionRequest } from "./action.js";

/**
 * Runs an argv template per event, without a shell: `["/usr/local/bin/block", "{kind}", "{ip}"]`.
 * Placeholders are replaced inside each argument; values are validated event fields (canonical ip,
 * jail pattern, hex origin), and an argument can never split into two.
 */
export function expandTemplate(template: readonly string[], request: ActionRequest): string[] {
  const values: Record<string, string> = {
    kind: request.kind,
    jail: request.jail,
    ip: request.ip,
    origin: request.origin,
    expires: String(Math.floor(request.expires / 1000)),
  };
  return template.map((arg) =>
    arg.replace(/\{(kind|jail|ip|origin|expires)\}/g, (_, name: string) => values[name]!),
  );
}

export class ExecAction implements Action {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly template: readonly string[],
    private readonly timeoutMs: number,
    private readonly logger: Logger,
    private readonly maxConcurrent = 2,
  ) {}

  async apply(requests: readonly ActionRequest[]): Promise<void> {
    await Promise.all(requests.map((r) => this.run(r)));
  }

  private async run(request: ActionRequest): Promise<void> {
    while (this.running >= this.maxConcurrent)
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    const [file, ...args] = expandTemplate(this.template, request);
    try {
      await new Promise<void>((resolve, reject) => {
        execFile(file!, args, { timeout: this.timeoutMs, maxBuffer: 65536, shell: false }, (error) =>
          error ? reject(error) : resolve(),
        );
      });
    } catch (error) {
      this.logger.error(
        { kind: request.kind, jail: request.jail, ip: request.ip, err: (error as Error).message },
        "exec action failed",
      );
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }

  async close(): Promise<void> {
    while (this.running > 0) await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
}
