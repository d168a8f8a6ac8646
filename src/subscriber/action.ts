import type { Logger } from "../logging.js";
import type { AppliedBan } from "./store.js";

/** One local change, after every check of the subscriber's checklist has passed. */
export interface ActionRequest {
  kind: "ban" | "unban";
  jail: string;
  ip: string;
  origin: string;
  /** ms since epoch; for an unban, when it was decided. */
  expires: number;
}

/** The requests that ban (again) or lift bans held here, each as its longest holder holds it. */
export function requestsFor(kind: ActionRequest["kind"], bans: readonly AppliedBan[]): ActionRequest[] {
  return bans.map((b) => ({ kind, jail: b.jail, ip: b.ip, origin: b.origin, expires: b.expires }));
}

/** Where accepted events go: fail2ban, a command, or the log. */
export interface Action {
  apply(requests: readonly ActionRequest[]): Promise<void>;
  /** Waits for what is in flight. */
  close(): Promise<void>;
}

/**
 * One structured log line per event: the `log` action, and what `dryRun: true` prints instead of
 * acting (message `dry-run: would <type>`, which the demo reads, with `describe` telling what the
 * configured action would have run or asked); it never runs or asks anything.
 */
export class LogAction implements Action {
  constructor(
    private readonly logger: Logger,
    private readonly message: string,
    private readonly describe: (request: ActionRequest) => Record<string, unknown> = () => ({}),
  ) {}

  async apply(requests: readonly ActionRequest[]): Promise<void> {
    for (const r of requests) {
      const fields = {
        kind: r.kind,
        jail: r.jail,
        ip: r.ip,
        origin: r.origin,
        expires: new Date(r.expires).toISOString(),
      };
      this.logger.info({ ...fields, ...this.describe(r) }, this.message);
    }
  }

  async close(): Promise<void> {}
}
