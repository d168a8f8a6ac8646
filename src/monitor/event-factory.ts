import type { SecretIdentity } from "../keys/identity.js";
import { parseVerifiedPayload } from "../protocol/event.js";
import { signEvent } from "../protocol/signature.js";
import type { BanTimes } from "./ban-times.js";
import type { MonitorEvent } from "./interpret.js";
import type { Outbox, OutboxEntry } from "./outbox.js";

export type SignedEntry = OutboxEntry & { kind: "ban" | "unban"; jail: string; ip: string };

/** Signs the monitor's events: per-origin sequence, each jail's ban time (see ban-times.ts). */
export class EventFactory {
  constructor(
    private readonly identity: SecretIdentity,
    private readonly banTimes: BanTimes,
    private readonly allowCidr: boolean,
    private readonly outbox: Outbox,
    private readonly now: () => number = Date.now,
  ) {}

  async sign(event: MonitorEvent, ip: string): Promise<SignedEntry> {
    // Asked before the clock is read: the duration counts from the signing, not from the question.
    const banTime = event.kind === "ban" ? await this.banTimes.forJail(event.jail) : 0;
    const time = this.now();
    const expires = time + banTime;
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
