import type { Config, SubscriberConfig } from "../config/schema.js";
import { loadSecretIdentity } from "../keys/files.js";
import { loadPinnedKey } from "../keys/store.js";
import { Counters, type Logger, RateLimitedLog } from "../logging.js";
import { hostAddresses, NeverBanList } from "../policy/never-ban.js";
import { ReplayGuard } from "../protocol/replay.js";
import { assertCurve } from "../transport/sockets.js";
import { Checklist, type DropReason, jailMapper, type Source } from "./checklist.js";
import { createAction } from "./create-action.js";
import { hostOf, type LocalFail2ban, localFail2ban, resolveEntries } from "./local-fail2ban.js";
import { OriginsWatcher } from "./origins.js";
import { PublisherReceiver } from "./receiver.js";
import { type AppliedBan, SubscriberStore } from "./store.js";

export type SubscriberSettings = Config & { subscriber: SubscriberConfig };

const JAIL_REFRESH_MS = 5 * 60_000;
const HOUSEKEEPING_MS = 60_000;
/** How soon a key removed from subscriber.origins stops counting. */
const ORIGINS_POLL_MS = 1_000;
/** The expiry timer never sleeps longer than this, so a clock step is noticed within a minute. */
const MAX_EXPIRY_WAIT_MS = 60_000;

/** Drops an operator wants to see (someone signed or relayed something wrong); the rest is routine. */
const NOTABLE: ReadonlySet<DropReason> = new Set<DropReason>([
  "signature",
  "origin-mismatch",
  "schema",
  "version",
  "unauthorized",
  "never-ban",
  "future",
  "jail",
  "cidr",
  "ip",
  "busy",
]);

export interface RunningSubscriber {
  counters: Counters;
  store: SubscriberStore;
  close(): Promise<void>;
}

/**
 * The subscriber: follows every configured publisher, checks each event (checklist.ts), applies
 * what passes through its action, and unbans each applied ban itself when its expiry passes
 * (fail2ban's `banip` takes no duration). It never publishes anything.
 */
export async function startSubscriber(
  config: SubscriberSettings,
  logger: Logger,
): Promise<RunningSubscriber> {
  assertCurve();
  const settings = config.subscriber;
  const log = logger.child({ component: "subscriber" });
  const identity = await loadSecretIdentity(config.node.identity);
  const publishers = await Promise.all(
    settings.publishers.map(async (p) => ({ ...p, identity: await loadPinnedKey(p.key) })),
  );
  const counters = new Counters();
  // Never ban: built-ins, this host, the publishers and configured peers, subscriber.neverBan
  // (entries checked by the schema), and the target jails' ignoreip (banip bypasses it).
  const baseEntries = [
    ...settings.neverBan,
    ...(await resolveEntries(
      publishers.flatMap((p) => [hostOf(p.feed), hostOf(p.snapshot)]).filter((h) => h !== undefined),
      "publisher address",
      log,
    )),
    ...(await resolveEntries(settings.peers, "subscriber.peers entry", log, true)),
  ];
  const host = hostAddresses();
  const action = createAction(settings, logger, counters);
  const store = new SubscriberStore(config.node.stateDir, {
    ledger: !settings.action.dryRun && settings.action.type !== "log",
  });
  let local: LocalFail2ban;
  try {
    local = await localFail2ban(settings, log);
  } catch (error) {
    store.close();
    await action.close();
    throw error;
  }
  let neverBan = NeverBanList.create({ entries: [...baseEntries, ...local.ignoreIp], hostAddresses: host });

  const jailLog = new RateLimitedLog(60_000, 1);
  const mapped = jailMapper(settings.action, () => local.jails);
  const mapJail = (jail: string): string | undefined => {
    const target = mapped(jail);
    if (target === undefined && jailLog.allow(jail) !== undefined) {
      log.warn(
        { jail, target: settings.action.jail, fallback: settings.action.fallbackJail },
        "the target jail does not exist in fail2ban, nor a fallbackJail: event dropped",
      );
    }
    return target;
  };
  const origins = settings.origins
    ? await OriginsWatcher.open(settings.origins, { logger, counters, pollMs: ORIGINS_POLL_MS })
    : undefined;
  const checklist = new Checklist({
    self: identity.nodeId,
    guard: new ReplayGuard({ windowMs: config.events.window }),
    store,
    neverBan: () => neverBan,
    origins,
    allowCidr: config.events.allowCidr,
    mapJail,
    counters,
    maxBanTimeMs: config.events.maxBanTime,
    maxFutureMs: config.events.window,
  });

  const dropLog = new RateLimitedLog(60_000, 3);
  const onEvent = async (payload: Buffer, signature: Buffer, source: Source) => {
    const decision = await checklist.check(payload, signature, source);
    if (!decision.ok) {
      const fields = {
        reason: decision.reason,
        id: decision.event?.id,
        origin: decision.event?.name,
        kind: decision.event?.kind,
        jail: decision.event?.jail,
        ip: decision.event?.ip,
        source,
      };
      if (!NOTABLE.has(decision.reason)) log.debug(fields, "event dropped");
      else {
        const suppressed = dropLog.allow(decision.reason);
        if (suppressed !== undefined) log.warn({ ...fields, suppressed }, "event refused");
      }
      return;
    }
    const { event, jail } = decision;
    if (event.kind === "ban") {
      const expires = Math.min(event.expires, Date.now() + config.events.maxBanTime);
      const holder = { jail, ip: event.ip, origin: event.origin, source: event.jail, id: event.id, expires };
      // Ledger first: the `Ban` line fail2ban writes must already be known as the cluster's.
      const first = store.addHolder(holder);
      const fields = {
        id: event.id,
        origin: event.name,
        jail,
        ip: event.ip,
        source,
        expires: new Date(expires).toISOString(),
      };
      scheduleExpiry();
      if (!first) {
        // Already banned here: the hold only keeps it banned until this origin releases it too.
        counters.inc("bans.holder-added");
        log.debug(fields, "another holder of a ban applied here");
        return;
      }
      log.info(fields, "ban received");
      await action.apply([{ kind: "ban", jail, ip: event.ip, origin: event.origin, expires }]);
    } else {
      // Only an origin's own hold is released: never a ban fail2ban made on its own, nor another
      // node's; the address is lifted once no origin holds it.
      const released = store.release(
        { jail, ip: event.ip, origin: event.origin, source: event.jail },
        Date.now(),
      );
      if (released.removed === 0) {
        counters.inc("dropped.unban-not-held");
        log.debug({ id: event.id, jail, ip: event.ip }, "unban of a ban not held here: ignored");
        return;
      }
      if (released.lifted.length === 0) {
        counters.inc("bans.holder-released");
        log.debug(
          { id: event.id, origin: event.name, jail, ip: event.ip },
          "unban by one holder: still held by another",
        );
        return;
      }
      log.info({ id: event.id, origin: event.name, jail, ip: event.ip }, "unban received");
      await action.apply([
        { kind: "unban", jail, ip: event.ip, origin: event.origin, expires: event.expires },
      ]);
    }
  };

  const unbanLifted = async (lifted: readonly AppliedBan[], why: string) => {
    if (lifted.length === 0) return;
    counters.inc("bans.expired", lifted.length);
    log.info({ count: lifted.length, ips: lifted.map((b) => b.ip) }, why);
    await action.apply(
      lifted.map((b) => ({
        kind: "unban" as const,
        jail: b.jail,
        ip: b.ip,
        origin: b.origin,
        expires: b.expires,
      })),
    );
  };
  // Unsigned, from the pinned publisher: releases only the hold of that very event id.
  const onExpire = async (expiry: { ip: string; id: string }) => {
    const released = store.release({ ip: expiry.ip, id: expiry.id }, Date.now());
    if (released.removed > 0) counters.inc("expiry.released");
    await unbanLifted(released.lifted, "bans lifted by the publisher's expiry");
    scheduleExpiry();
  };

  let expiryTimer: NodeJS.Timeout | undefined;
  let expiring: Promise<void> | undefined;
  let closed = false;
  const runExpiries = async () => {
    expiryTimer = undefined;
    if (closed) return;
    await unbanLifted(store.expire(Date.now()).lifted, "expired bans lifted");
    scheduleExpiry();
  };
  const expireNow = () => {
    expiring ??= runExpiries()
      .catch((error: Error) => log.error({ err: error.message }, "expiry failed"))
      .finally(() => {
        expiring = undefined;
      });
    return expiring;
  };
  const scheduleExpiry = () => {
    if (closed) return;
    const next = store.nextExpiry();
    clearTimeout(expiryTimer);
    expiryTimer = undefined;
    if (next === undefined) return;
    const wait = Math.max(0, Math.min(next - Date.now(), MAX_EXPIRY_WAIT_MS));
    expiryTimer = setTimeout(() => void expireNow(), wait);
  };

  const receivers = publishers.map(
    (p) =>
      new PublisherReceiver({
        feed: p.feed,
        snapshot: p.snapshot,
        serverKey: p.identity.curvePublic,
        identity: { curvePublic: identity.curvePublic, curveSecret: identity.curveSecret },
        lastSeq: store.publisherSeq(p.feed),
        saveSeq: (seq) => store.setPublisherSeq(p.feed, seq),
        onEvent,
        onExpire,
        logger,
        counters,
      }),
  );
  // Bans that expired while we were down are lifted first; the others are applied again: fail2ban
  // forgets bans older than its dbpurgeage (1 day by default) when it restarts, and `banip` of a
  // ban it still holds changes nothing (its log says `already banned`, never a new `Ban`).
  await expireNow();
  const held = store.applied();
  if (held.length > 0 && settings.action.type === "fail2ban" && !settings.action.dryRun) {
    log.info({ count: held.length }, "re-applying held cluster bans");
    await action.apply(
      held.map((b) => ({
        kind: "ban" as const,
        jail: b.jail,
        ip: b.ip,
        origin: b.origin,
        expires: b.expires,
      })),
    );
  }
  for (const r of receivers) r.start();

  const housekeeping = setInterval(() => {
    try {
      store.prune(Date.now());
      store.pruneSeen(Date.now() - 2 * config.events.window);
    } catch (error) {
      log.error({ err: (error as Error).message }, "state housekeeping failed");
    }
  }, HOUSEKEEPING_MS);
  const jailRefresh = setInterval(() => {
    local
      .refresh()
      .then(() => {
        neverBan = NeverBanList.create({ entries: [...baseEntries, ...local.ignoreIp], hostAddresses: host });
      })
      .catch((error: Error) => log.warn({ err: error.message }, "cannot refresh fail2ban jails"));
  }, JAIL_REFRESH_MS);
  jailRefresh.unref();

  log.info(
    {
      publishers: publishers.map((p) => p.feed),
      action: settings.action.type,
      jail: settings.action.jail,
      dryRun: settings.action.dryRun,
      held: store.applied().length,
    },
    "following the publishers",
  );

  let closing: Promise<void> | undefined;
  return {
    counters,
    store,
    close: () => {
      closing ??= (async () => {
        closed = true;
        clearInterval(housekeeping);
        clearInterval(jailRefresh);
        clearTimeout(expiryTimer);
        await Promise.all(receivers.map((r) => r.close()));
        await origins?.close();
        await expiring;
        await action.close();
        store.close();
      })();
      return closing;
    },
  };
}
