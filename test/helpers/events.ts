import type { SecretIdentity } from "../../src/keys/identity.js";
import { type EventFields, type SignedEvent, signEvent } from "../../src/protocol/signature.js";

/** What a test names of an event: its number and address; the rest has defaults. */
export type BanFields = Partial<EventFields> & Pick<EventFields, "seq" | "ip">;

/**
 * A validly signed event by `identity`: a ban in jail sshd, stamped now, for an hour, unless
 * `fields` say otherwise (an unban expires at its own time). `allowCidr` signs a range, as only
 * a buggy or hostile origin would.
 */
export function sign(identity: SecretIdentity, fields: BanFields, allowCidr = false): Promise<SignedEvent> {
  const time = fields.time ?? Date.now();
  const kind = fields.kind ?? "ban";
  return signEvent(
    identity,
    { jail: "sshd", expires: kind === "ban" ? time + 3_600_000 : time, ...fields, time, kind },
    { allowCidr },
  );
}
