import type { SubscriberConfig } from "../config/schema.js";
import type { Logger } from "../logging.js";
import { HostAddressWatch, type HostAddressWatchOptions } from "../policy/host-addresses.js";
import { NeverBanList } from "../policy/never-ban.js";
import { hostOf } from "../policy/never-ban-entries.js";
import { type LocalFail2ban, localFail2ban, protectedEntries } from "./local-fail2ban.js";

/** What the checklist asks of this host at each event: read as one value, replaced as one. */
export interface LocalPolicy {
  neverBan: NeverBanList;
  /** Jails that exist locally; undefined when unknown (through the ban-helper, or a dry run). */
  jails: ReadonlySet<string> | undefined;
}

const REFRESH_MS = 5 * 60_000;

/**
 * The never-ban list and the local jails: built-ins, this host's addresses, the publishers' hosts,
 * subscriber.peers and subscriber.neverBan (entries checked by the schema), and the target jails'
 * ignoreip (`banip` bypasses it), read from fail2ban again every few minutes. Fails closed at
 * start: without the jails' ignoreip, banip would ban addresses fail2ban is told to spare.
 */
export class NeverBanSource {
  private policy: LocalPolicy;
  private readonly timer: NodeJS.Timeout;
  /** This host's addresses, read again every minute: a new one is protected without a restart. */
  private readonly host: HostAddressWatch;

  private constructor(
    private readonly base: readonly string[],
    private readonly local: LocalFail2ban,
    log: Logger,
    refreshMs: number,
    hostWatch: Omit<HostAddressWatchOptions, "onChange">,
  ) {
    this.host = new HostAddressWatch({
      ...hostWatch,
      onChange: (addresses) => {
        this.policy = this.build();
        log.info({ addresses }, "host addresses changed");
      },
    });
    this.policy = this.build();
    this.timer = setInterval(() => {
      local
        .refresh()
        .then(() => {
          this.policy = this.build();
        })
        .catch((error: Error) => log.warn({ err: error.message }, "cannot refresh fail2ban jails"));
    }, refreshMs);
    this.timer.unref();
  }

  static async open(
    settings: SubscriberConfig,
    publishers: readonly { feed: string; snapshot: string }[],
    log: Logger,
    refreshMs = REFRESH_MS,
    hostWatch: Omit<HostAddressWatchOptions, "onChange"> = {},
  ): Promise<NeverBanSource> {
    const hosts = publishers.flatMap((p) => [hostOf(p.feed), hostOf(p.snapshot)]);
    const base = [
      ...settings.neverBan,
      ...(await protectedEntries(
        hosts.filter((h) => h !== undefined),
        "publisher address",
        log,
      )),
      ...(await protectedEntries(settings.peers, "subscriber.peers entry", log, true)),
    ];
    return new NeverBanSource(base, await localFail2ban(settings, log), log, refreshMs, hostWatch);
  }

  get current(): LocalPolicy {
    return this.policy;
  }

  close(): void {
    clearInterval(this.timer);
    this.host.close();
  }

  private build(): LocalPolicy {
    const entries = [...this.base, ...this.local.ignoreIp];
    return {
      neverBan: NeverBanList.create({ entries, hostAddresses: this.host.addresses }),
      jails: this.local.jails,
    };
  }
}
