import { F2bzError } from "../errors.js";
import { type Logger, untrusted } from "../logging.js";
import type { LabelsOf } from "../metrics/catalogue.js";
import type { Metrics } from "../metrics/registry.js";
import { parseAddress } from "../policy/address.js";
import { isValidJail } from "../policy/jail.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import type { EventFactory, SignedEntry } from "./event-factory.js";
import type { MonitorEvent } from "./interpret.js";
import type { LedgerReader } from "./ledger-reader.js";

type DropReason = LabelsOf<"log_lines_dropped_total">["reason"];

export interface PublishableOptions {
  events: EventFactory;
  /** This host's subscriber's ledger: what it applied from the cluster is an echo. */
  ledger: LedgerReader;
  allowCidr: boolean;
  now: () => number;
  logger: Logger;
  metrics: Metrics;
}

/**
 * Which of the interpreter's events are worth publishing, signed: a jail name and an address that
 * events can carry (fail2ban's log is untrusted text), not an echo of a ban this host's subscriber
 * applied from the cluster, and an event the receivers' own parser accepts.
 */
export class PublishableEvents {
  private readonly dropLog: LimitedLog;

  constructor(private readonly o: PublishableOptions) {
    this.dropLog = new LimitedLog(o.logger, new RateLimitedLog(60_000, 3));
  }

  async sign(produced: readonly MonitorEvent[]): Promise<SignedEntry[]> {
    const entries: SignedEntry[] = [];
    const now = this.o.now();
    for (const event of produced) {
      // fail2ban allows jail names (blanks, brackets, long names) that events cannot carry.
      if (!isValidJail(event.jail)) {
        this.dropped(
          "invalid-jail",
          { jail: untrusted(event.jail, 60) },
          "ban of a jail name f2bz cannot carry ignored",
        );
        continue;
      }
      const address = unspecified(event.ip)
        ? ({ ok: false, reason: "unspecified address (how fail2ban logs a ban of a /0)" } as const)
        : parseAddress(event.ip, { allowCidr: this.o.allowCidr });
      if (!address.ok) {
        this.dropped(
          "invalid-ip",
          { ip: untrusted(event.ip, 60), reason: address.reason },
          "log line with an invalid address ignored",
        );
        continue;
      }
      if (this.o.ledger.applied(event.kind, event.jail, address.ip, now)) {
        this.o.metrics.inc("events_echo_total");
        this.o.logger.debug(
          { kind: event.kind, jail: event.jail, ip: address.ip },
          "applied from the cluster: not published",
        );
        continue;
      }
      try {
        entries.push(await this.o.events.sign(event, address.ip));
      } catch (error) {
        // Refused by the receivers' own parser (say, a ban time of 0): retrying cannot help.
        if (!(error instanceof F2bzError && error.code === "MESSAGE_REJECTED")) throw error;
        this.dropped("unsignable", { err: error.message }, "event that receivers would refuse not published");
      }
    }
    return entries;
  }

  private dropped(reason: DropReason, fields: Record<string, unknown>, message: string): void {
    this.o.metrics.inc("log_lines_dropped_total", { reason });
    this.dropLog.warn(reason, fields, message);
  }
}

/**
 * `banip 0.0.0.0/0` is logged as `Ban 0.0.0.0` and `banip ::/0` as `Ban ::` (fail2ban-lab-findings
 * §7.1): single-host syntax for a ban of everything, never to be published.
 */
function unspecified(ip: string): boolean {
  const address = parseAddress(ip);
  return address.ok && (address.ip === "0.0.0.0" || address.ip === "::");
}
