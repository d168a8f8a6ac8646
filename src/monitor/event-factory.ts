import type { MonitorConfig } from "../config/schema.js";
import type { SecretIdentity } from "../keys/identity.js";
import { parseVerifiedPayload } from "../protocol/event.js";
import { signEvent } from "../protocol/signature.js";
import type { MonitorEvent } from "./interpret.js";
import type { Outbox, OutboxEntry } from "./outbox.js";

export type SignedEntry = OutboxEntry & { kind: "ban" | "unban"; jail: string; ip: string };

/** Signs the monitor's events: per-origin sequence, the configured ban time per jail. */
export class EventFactory {
  constructor(
    private readonly identity: SecretIdentity,
    private readonly settings: MonitorConfig,
    private readonly allowCidr: boolean,
    private readonly outbox: Outbox,
    private readonly now: () => number = Date.now,
  ) {}

  async sign(event: MonitorEvent, ip: string): Promise<SignedEntry> {
    const time = this.now();
    // Own keys only: a jail named `constructor` must not find Object.prototype's.
    const banTimes = this.settings.banTimes;
    const banTime = Object.hasOwn(banTimes, event.jail) ? banTimes[event.jail]! : this.settings.banTime;
    const expires = event.kind === "ban" ? time + banTime : time;
    return this.entry(event.kind, event.jail, ip, time, expires, this.outbox.takeSeq());
  }

  /**
   * An entry older than the publishers' window is signed again with a new sequence number and the
   * current time (same ban, same expiry); a ban whose expiry passed meanwhile is dropped. Undefined
   * when dropped, or when the entry is gone already (another publisher's link replaced it first).
   */
  async refresh(old: OutboxEntry): Promise<OutboxEntry | undefined> {
    if (!this.outbox.has(old.id)) return undefined;
    const parsed = parseVerifiedPayload(old.payload, { allowCidr: this.allowCidr });
    const now = this.now();
    if (!parsed.ok || (parsed.event.kind === "ban" && parsed.event.expires <= now)) {
      this.outbox.replace(old.id, undefined);
      return undefined;
    }
    const e = parsed.event;
    const fresh = await this.entry(
      e.kind,
      e.jail,
      e.ip,
      now,
      e.kind === "ban" ? e.expires : now,
      this.outbox.takeSeq(),
    );
    return this.outbox.replace(old.id, fresh) ? fresh : undefined;
  }

  private async entry(
    kind: "ban" | "unban",
    jail: string,
    ip: string,
    time: number,
    expires: number,
    seq: number,
  ): Promise<SignedEntry> {
    const signed = await signEvent(
      this.identity,
      { seq, kind, jail, ip, time, expires },
      { allowCidr: this.allowCidr },
    );
    return {
      id: signed.event.id,
      seq,
      time,
      expires,
      payload: signed.payload,
      signature: signed.signature,
      kind,
      jail,
      ip: signed.event.ip,
    };
  }
}
