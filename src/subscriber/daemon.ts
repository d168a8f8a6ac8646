import { lookup } from "node:dns/promises";
import type { Config, SubscriberConfig } from "../config/schema.js";
import { F2bzError, quote } from "../errors.js";
import { Fail2banClient } from "../fail2ban/client.js";
import type { BanExecutor } from "../fail2ban/executor.js";
import { BanHelperClient } from "../fail2ban/helper-client.js";
import { formatRequest } from "../fail2ban/helper-protocol.js";
import { loadPublicIdentity, loadSecretIdentity } from "../keys/files.js";
import { loadEntries } from "../keys/store.js";
import { Counters, type Logger, RateLimitedLog } from "../logging.js";
import { parseNetwork } from "../policy/address.js";
import { hostAddresses, NeverBanList } from "../policy/never-ban.js";
import { ReplayGuard } from "../protocol/replay.js";
import { assertCurve } from "../transport/sockets.js";
import { type Action, type ActionRequest, LogAction } from "./action.js";
import { Checklist, type DropReason, jailMapper, type Source } from "./checklist.js";
import { checkTemplate, ExecAction, expandTemplate } from "./exec-action.js";
import { Fail2banAction } from "./fail2ban-action.js";
import { PublisherReceiver } from "./receiver.js";
import { SubscriberStore } from "./store.js";

export type SubscriberSettings = Config & { subscriber: SubscriberConfig };

const JAIL_REFRESH_MS = 5 * 60_000;
const HOUSEKEEPING_MS = 60_000;
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
    settings.publishers.map(async (p) => ({ ...p, identity: await loadPublicIdentity(p.key) })),
  );
  const origins = settings.origins
    ? new Set((await loadEntries(settings.origins)).filter((e) => e.signPublic).map((e) => e.nodeId))
    : undefined;
  const counters = new Counters();
  // Never ban: built-ins, this host, the publishers and configured peers, subscriber.neverBan
  // (checked here, before anything is opened), and the target jails' ignoreip (banip bypasses it).
  NeverBanList.create({ entries: settings.neverBan });
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
      // Ledger first: the `Ban` line fail2ban writes must already be known as the cluster's.
      store.recordBan({ jail, ip: event.ip, id: event.id, origin: event.origin, expires });
      log.info(
        {
          id: event.id,
          origin: event.name,
          jail,
          ip: event.ip,
          source,
          expires: new Date(expires).toISOString(),
        },
        "ban received",
      );
      await action.apply([{ kind: "ban", jail, ip: event.ip, origin: event.origin, expires }]);
      scheduleExpiry();
    } else {
      // Only what this subscriber applied for the same origin is lifted: never a ban fail2ban made
      // on its own, nor another node's.
      if (!store.recordUnban(jail, event.ip, Date.now(), event.origin)) {
        counters.inc("dropped.unban-not-held");
        log.debug({ id: event.id, jail, ip: event.ip }, "unban of a ban not held here: ignored");
        return;
      }
      log.info({ id: event.id, origin: event.name, jail, ip: event.ip }, "unban received");
      await action.apply([
        { kind: "unban", jail, ip: event.ip, origin: event.origin, expires: event.expires },
      ]);
    }
  };

  let expiryTimer: NodeJS.Timeout | undefined;
  let expiring: Promise<void> | undefined;
  let closed = false;
  const runExpiries = async () => {
    expiryTimer = undefined;
    if (closed) return;
    const now = Date.now();
    const requests: ActionRequest[] = [];
    for (const ban of store.due(now)) {
      if (!store.recordUnban(ban.jail, ban.ip, now)) continue;
      requests.push({ kind: "unban", jail: ban.jail, ip: ban.ip, origin: ban.origin, expires: ban.expires });
      counters.inc("bans.expired");
    }
    if (requests.length > 0) {
      log.info({ count: requests.length, ips: requests.map((r) => r.ip) }, "expired bans lifted");
      await action.apply(requests);
    }
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
        await expiring;
        await action.close();
        store.close();
      })();
      return closing;
    },
  };
}

function createAction(settings: SubscriberConfig, logger: Logger, counters: Counters): Action {
  const a = settings.action;
  const log = logger.child({ component: "action" });
  if (a.dryRun) {
    const dry = log.child({ dryRun: true });
    const message = `dry-run: would ${a.type}`;
    if (a.type === "exec") {
      const command = a.command!;
      checkTemplate(command);
      return new LogAction(dry, message, (r) => ({ would: expandTemplate(command, r) }));
    }
    if (a.type === "log") return new LogAction(dry, message, () => ({}));
    const verb = (r: ActionRequest) => (r.kind === "ban" ? "banip" : "unbanip");
    if (a.helper) {
      const helper = a.helper;
      return new LogAction(dry, message, (r) => ({
        helper,
        would: formatRequest(r.kind === "ban" ? "BAN" : "UNBAN", r.jail, [r.ip]).trimEnd(),
      }));
    }
    return new LogAction(dry, message, (r) => ({ would: [a.client, "set", r.jail, verb(r), r.ip] }));
  }
  if (a.type === "log") return new LogAction(log, "cluster event");
  if (a.type === "exec") return new ExecAction(a.command!, { timeoutMs: a.timeout }, log, counters);
  const executor: BanExecutor = a.helper
    ? new BanHelperClient(a.helper, { timeoutMs: a.timeout + 5_000 })
    : new Fail2banClient({ client: a.client, timeoutMs: a.timeout, batchSize: a.batchSize });
  return new Fail2banAction(executor, a.batchSize, logger, counters);
}

interface LocalFail2ban {
  /** Jails that exist locally; undefined when unknown (through the ban-helper, or a dry run). */
  jails: Set<string> | undefined;
  ignoreIp: string[];
  refresh(): Promise<void>;
}

/**
 * What the subscriber learns from the local fail2ban: its jails and their ignoreip. Asked only by
 * a `fail2ban` action that runs fail2ban-client itself: a dry run never touches fail2ban, and
 * through the ban-helper the subscriber has no access to it (the helper has its own never-ban list).
 */
async function localFail2ban(settings: SubscriberConfig, log: Logger): Promise<LocalFail2ban> {
  const a = settings.action;
  const state: LocalFail2ban = { jails: undefined, ignoreIp: [], refresh: async () => {} };
  if (a.type !== "fail2ban" || a.dryRun || a.helper) return state;
  const client = new Fail2banClient({ client: a.client, timeoutMs: a.timeout });
  state.refresh = async () => {
    const jails = new Set(await client.jails());
    const targets =
      a.jail === "same"
        ? [...jails]
        : [a.jail, a.fallbackJail].filter((j): j is string => j !== undefined && jails.has(j));
    const entries = new Set<string>();
    for (const jail of targets) for (const entry of await client.ignoreIp(jail)) entries.add(entry);
    state.ignoreIp = await resolveEntries([...entries], "ignoreip entry", log);
    state.jails = jails;
  };
  // Fail closed: without the jails' ignoreip, banip would ban addresses fail2ban is told to spare.
  await state.refresh();
  for (const jail of [a.jail === "same" ? undefined : a.jail, a.fallbackJail]) {
    if (jail !== undefined && !state.jails?.has(jail)) {
      log.warn({ jail, jails: [...(state.jails ?? [])] }, "configured jail does not exist in fail2ban (yet)");
    }
  }
  return state;
}

/** The host of a tcp endpoint ("tcp://[2001:db8::1]:5680" → "2001:db8::1"); none for ipc or "*". */
function hostOf(endpoint: string): string | undefined {
  const host = /^tcp:\/\/(?:\[([^\]]+)\]|([^:]+)):[^:]+$/.exec(endpoint);
  const name = host?.[1] ?? host?.[2];
  return name === undefined || name === "*" ? undefined : name;
}

/**
 * Addresses and ranges (any prefix) as they are; host names resolved now (again at each refresh).
 * An entry that protects nothing must not look as if it did: with `strict` (configuration) a
 * malformed one is an error, otherwise (fail2ban's ignoreip, a name that does not resolve) it is
 * said in the log.
 */
async function resolveEntries(
  items: readonly string[],
  what: string,
  log: Logger,
  strict = false,
): Promise<string[]> {
  const out: string[] = [];
  for (const item of items) {
    const network = parseNetwork(item, { allowCidr: true, minPrefix: { 4: 0, 6: 0 } });
    if (network.ok) {
      out.push(network.ip);
      continue;
    }
    const name = /^(?=.*[A-Za-z])[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(item);
    if (!name && strict) {
      throw new F2bzError("CONFIG_INVALID", `${what} ${quote(item)} is invalid (${network.reason})`);
    }
    if (name) {
      try {
        const found = await lookup(item, { all: true });
        for (const r of found) {
          const address = parseNetwork(r.address);
          if (address.ok) out.push(address.ip);
        }
        if (found.length > 0) continue;
      } catch {
        // Reported below.
      }
    }
    log.warn({ entry: item }, `${what} is neither an address, a range nor a resolvable name: not protected`);
  }
  return out;
}
