import type { MonitorConfig } from "../config/schema.js";
import { type Fail2banBanTime, parseBanTimeAnswer } from "../fail2ban/ban-time.js";
import { type Logger, untrusted } from "../logging.js";
import { isValidJail } from "../policy/jail.js";

export interface BanTimesOptions {
  settings: Pick<MonitorConfig, "banTime" | "banTimes" | "banTimeFrom" | "banTimeRefresh">;
  /** events.maxBanTime: what fail2ban's negative (permanent) bantime becomes. */
  maxBanTimeMs: number;
  /** `fail2ban-client get <jail> bantime`'s stdout; rejects when fail2ban cannot be asked. */
  ask: (jail: string) => Promise<string>;
  now: () => number;
  logger: Logger;
}

/** Jails whose answer is kept; past it the config decides (a forged log must not grow it forever). */
const MAX_JAILS = 1000;

interface Entry {
  value: Fail2banBanTime | undefined;
  at: number;
  pending?: Promise<void>;
}

/**
 * How long a ban lasts when the monitor signs it: the jail's bantime as fail2ban itself reports it
 * (banTimeFrom: fail2ban), else monitor.banTimes[jail], else monitor.banTime.
 *
 * Asked with `fail2ban-client get <jail> bantime`, which needs fail2ban's control socket. That
 * socket is root-equivalent and is never widened for the monitor (DESIGN §6): a monitor under the
 * shipped unprivileged unit is refused, warns once per refresh and keeps to the config. An answer,
 * or a failure, is kept for banTimeRefresh; a stale one is still used while a new one is asked, so
 * a slow or hung client delays at most the first ban of a jail.
 */
export class BanTimes {
  private readonly cache = new Map<string, Entry>();

  constructor(private readonly o: BanTimesOptions) {}

  async forJail(jail: string): Promise<number> {
    if (this.o.settings.banTimeFrom === "fail2ban") {
      const value = await this.fromFail2ban(jail);
      if (value === "permanent") return this.o.maxBanTimeMs;
      if (value !== undefined) return value;
    }
    // Own keys only: a jail named `constructor` must not find Object.prototype's.
    const banTimes = this.o.settings.banTimes;
    return Object.hasOwn(banTimes, jail) ? banTimes[jail]! : this.o.settings.banTime;
  }

  /** Forgets a jail's answer: fail2ban (re)started it, perhaps with another bantime. */
  forget(jail: string): void {
    this.cache.delete(jail);
  }

  private async fromFail2ban(jail: string): Promise<Fail2banBanTime | undefined> {
    let entry = this.cache.get(jail);
    if (entry === undefined) {
      // The name comes from the log: only a jail name reaches fail2ban-client's argv.
      if (this.cache.size >= MAX_JAILS || !isValidJail(jail)) return undefined;
      entry = { value: undefined, at: this.o.now() };
      this.cache.set(jail, entry);
      await this.refresh(jail, entry);
    } else if (entry.pending) {
      if (entry.value === undefined) await entry.pending;
    } else if (this.o.now() - entry.at >= this.o.settings.banTimeRefresh) {
      void this.refresh(jail, entry);
    }
    return entry.value;
  }

  private refresh(jail: string, entry: Entry): Promise<void> {
    entry.pending = this.o
      .ask(jail)
      .then(
        (answer) => {
          const value = parseBanTimeAnswer(answer);
          if (value === undefined)
            this.warn(jail, `unexpected answer ${untrusted(answer, 40)}, expected whole seconds`);
          entry.value = value;
        },
        (error: unknown) => {
          this.warn(jail, (error as Error).message);
          entry.value = undefined;
        },
      )
      .finally(() => {
        entry.at = this.o.now();
        delete entry.pending;
      });
    return entry.pending;
  }

  private warn(jail: string, reason: string): void {
    this.o.logger.warn(
      { jail, reason },
      "cannot ask fail2ban for the jail's bantime, using monitor.banTimes or monitor.banTime",
    );
  }
}
