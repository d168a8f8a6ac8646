import test from "ava";
import { generateIdentity, type SecretIdentity } from "../../src/keys/identity.js";
import { Metrics } from "../../src/metrics/registry.js";
import { NeverBanList } from "../../src/policy/never-ban.js";
import type { SignedEvent } from "../../src/protocol/signature.js";
import type { ActionRequest } from "../../src/subscriber/action.js";
import { Apply } from "../../src/subscriber/apply.js";
import { Checklist } from "../../src/subscriber/checklist.js";
import { SubscriberStore } from "../../src/subscriber/store.js";
import { heldIn } from "../helpers/state.js";
import { tempDir } from "../helpers/temp-dir.js";
import { captureLogger, sign } from "./helpers.js";

const NOW = Date.now();
let self: SecretIdentity;
let web1: SecretIdentity;
let web2: SecretIdentity;
test.before(async () => {
  [self, web1, web2] = await Promise.all([
    generateIdentity("self"),
    generateIdentity("web1"),
    generateIdentity("web2"),
  ]);
});

/** The apply step on a real checklist and store; the action records what reaches it. */
async function bench(t: import("ava").ExecutionContext) {
  const stateDir = await tempDir(t, "f2bz-apply-");
  const store = new SubscriberStore(stateDir);
  t.teardown(() => store.close());
  const metrics = new Metrics("subscriber");
  const target = { jail: "same", fallbackJail: undefined };
  const checklist = new Checklist({
    self: self.nodeId,
    store,
    local: { current: { neverBan: NeverBanList.create({}), jails: new Set(["sshd"]) } },
    origins: undefined,
    allowCidr: false,
    target,
    metrics,
    windowMs: 120_000,
    now: () => NOW,
  });
  const applied: ActionRequest[] = [];
  let scheduled = 0;
  const { logger, lines } = captureLogger();
  const apply = new Apply({
    checklist,
    store,
    action: { apply: async (requests) => void applied.push(...requests), close: async () => {} },
    expiry: { schedule: () => void scheduled++ },
    target,
    metrics,
    logger,
    now: () => NOW,
  });
  const deliver = (e: SignedEvent) => apply.event(e.payload, e.signature, "live");
  return { apply, deliver, applied, lines, store, stateDir, scheduled: () => scheduled };
}

test("a ban is applied at its first holder and lifted after its last one's unban", async (t) => {
  const b = await bench(t);
  await b.deliver(await sign(web1, { seq: 1, ip: "203.0.113.5", time: NOW - 3000 }));
  await b.deliver(await sign(web2, { seq: 1, ip: "203.0.113.5", time: NOW - 2000 }));
  t.is(b.scheduled(), 2, "each hold's expiry is scheduled");
  await b.deliver(await sign(web1, { seq: 2, kind: "unban", ip: "203.0.113.5", time: NOW - 1000 }));
  t.deepEqual(
    b.applied.map((r) => [r.kind, r.ip]),
    [["ban", "203.0.113.5"]],
    "web2 still holds it",
  );
  await b.deliver(await sign(web2, { seq: 2, kind: "unban", ip: "203.0.113.5", time: NOW }));
  t.deepEqual(
    b.applied.map((r) => [r.kind, r.jail, r.ip, r.origin]),
    [
      ["ban", "sshd", "203.0.113.5", web1.nodeId],
      ["unban", "sshd", "203.0.113.5", web2.nodeId],
    ],
  );
  t.deepEqual(heldIn("subscriber", b.stateDir), []);
});

test("an event for a jail that exists nowhere here is refused, and the jail named once", async (t) => {
  const b = await bench(t);
  await b.deliver(await sign(web1, { seq: 1, ip: "203.0.113.5", jail: "web", time: NOW }));
  await b.deliver(await sign(web1, { seq: 2, ip: "203.0.113.6", jail: "web", time: NOW }));
  t.deepEqual(b.applied, []);
  const named = b.lines.filter((l) => /target jail does not exist/.test(l.msg));
  t.deepEqual(
    named.map((l) => [l.jail, l.target]),
    [["web", "same"]],
  );
  t.deepEqual(
    b.lines.filter((l) => l.msg === "event refused").map((l) => [l.reason, l.ip]),
    [
      ["jail", "203.0.113.5"],
      ["jail", "203.0.113.6"],
    ],
  );
});

test("a ban's expiry is capped at events.maxBanTime from now", async (t) => {
  const b = await bench(t);
  await b.deliver(
    await sign(web1, { seq: 1, ip: "203.0.113.5", time: NOW, expires: NOW + 365 * 86_400_000 }),
  );
  t.is(b.applied[0]?.expires, NOW + 30 * 86_400_000, "the default 30 days");
  t.is(heldIn("subscriber", b.stateDir)[0]?.expires, NOW + 30 * 86_400_000);
});
