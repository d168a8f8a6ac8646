import { lookup } from "node:dns/promises";
import type { Config, SubscriberConfig } from "../config/schema.js";
import { F2bzError } from "../errors.js";
import { Fail2banClient } from "../fail2ban/client.js";
import type { BanExecutor } from "../fail2ban/executor.js";
import { BanHelperClient } from "../fail2ban/helper-client.js";
import { loadPublicIdentity, loadSecretIdentity } from "../keys/files.js";
import { loadEntries } from "../keys/store.js";
import { Counters, type Logger } from "../logging.js";
import { parseAddress } from "../policy/address.js";
import { hostAddresses, NeverBanList } from "../policy/never-ban.js";
import { ReplayGuard } from "../protocol/replay.js";
import { assertCurve } from "../transport/sockets.js";
import { type Action, type ActionRequest, LogAction } from "./action.js";
import { Checklist, type Source } from "./checklist.js";
import { ExecAction } from "./exec-action.js";
import { Fail2banAction } from "./fail2ban-action.js";
import { PublisherReceiver } from "./receiver.js";
import { SubscriberStore } from "./store.js";

export type SubscriberSettings = Config & { subscriber: SubscriberConfig };

const JAIL_REFRESH_MS = 5 * 60_000;

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
  const store = new SubscriberStore(config.node.stateDir);
  const local = await localFail2ban(settings, log);

  // Never ban: built-ins, this host, the publishers and configured peers, subscriber.neverBan,
  // and the target jails' ignoreip (which `banip` bypasses).
  const baseEntries = [
    ...settings.neverBan,
    ...(await resolveAll([...publishers.map((p) => p.feed), ...settings.peers])),
  ];
  const host = hostAddresses();
  let neverBan = NeverBanList.create({ entries: [...baseEntries, ...local.ignoreIp], hostAddresses: host });

  const action = createAction(settings, local.executor, logger, counters);
  const mapJail = (jail: string): string => {
    const wanted = settings.action.jail === "same" ? jail : settings.action.jail;
    if (local.jails === undefined || local.jails.has(wanted)) return wanted;
    return settings.action.fallbackJail ?? "f2bz";
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
  });

  const apply = async (requests: ActionRequest[]) => {
    if (requests.length > 0) await action.apply(requests);
  };

  const onEvent = async (payload: Buffer, signature: Buffer, source: Source) => {
    const decision = await checklist.check(payload, signature, source);
    if (!decision.ok) {
      if (decision.reason !== "duplicate") {
        log.debug({ reason: decision.reason, id: decision.event?.id, source }, "event dropped");
      }
      return;
    }
    const { event, jail } = decision;
    const maxExpiry = Date.now() + config.events.maxBanTime;
    if (event.kind === "ban") {
      const expires = Math.min(event.expires, maxExpiry);
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
      await apply([{ kind: "ban", jail, ip: event.ip, origin: event.origin, expires }]);
      scheduleExpiry();
    } else {
      if (!store.recordUnban(jail, event.ip, Date.now())) {
        counters.inc("dropped.unban-not-held");
        return;
      }
      log.info({ id: event.id, origin: event.name, jail, ip: event.ip }, "unban received");
      await apply([{ kind: "unban", jail, ip: event.ip, origin: event.origin, expires: event.expires }]);
    }
  };

  let expiryTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const runExpiries = async () => {
    expiryTimer = undefined;
    const now = Date.now();
    const due = store.due(now);
    const requests: ActionRequest[] = [];
    for (const ban of due) {
      store.recordUnban(ban.jail, ban.ip, now);
      requests.push({ kind: "unban", jail: ban.jail, ip: ban.ip, origin: ban.origin, expires: ban.expires });
      counters.inc("bans.expired");
    }
    if (requests.length > 0) log.info({ count: requests.length }, "expired bans lifted");
    await apply(requests);
    scheduleExpiry();
  };
  const scheduleExpiry = () => {
    if (closed) return;
    const next = store.nextExpiry();
    if (next === undefined) return;
    const wait = Math.max(0, Math.min(next - Date.now(), 60_000));
    clearTimeout(expiryTimer);
    expiryTimer = setTimeout(() => {
      runExpiries().catch((error: Error) => log.error({ err: error.message }, "expiry failed"));
    }, wait);
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
  // Bans that expired while we were down are lifted first.
  await runExpiries();
  for (const r of receivers) r.start();

  const housekeeping = setInterval(() => {
    store.prune(Date.now());
    store.pruneSeen(Date.now() - 2 * config.events.window);
  }, 60_000);
  const jailRefresh = setInterval(() => {
    local
      .refresh()
      .then(() => {
        neverBan = NeverBanList.create({ entries: [...baseEntries, ...local.ignoreIp], hostAddresses: host });
      })
      .catch((error: Error) => log.warn({ err: error.message }, "cannot refresh fail2ban jails"));
  }, JAIL_REFRESH_MS);
  jailRefresh.unref();

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
        await action.close();
        store.close();
      })();
      return closing;
    },
  };
}

function createAction(
  settings: SubscriberConfig,
  executor: BanExecutor | undefined,
  log: Logger,
  counters: Counters,
): Action {
  const a = settings.action;
  if (a.dryRun)
    return new LogAction(log.child({ component: "action", dryRun: true }), `dry-run: would ${a.type}`);
  if (a.type === "log") return new LogAction(log.child({ component: "action" }), "action");
  if (a.type === "exec")
    return new ExecAction(a.command ?? [], a.timeout, log.child({ component: "action" }), 2);
  if (!executor) throw new F2bzError("INTERNAL", "fail2ban action without a fail2ban executor");
  return new Fail2banAction(executor, a.batchSize, log, counters);
}

interface LocalFail2ban {
  /** fail2ban-client or the ban-helper, unless the action is of another type or a dry run. */
  executor: BanExecutor | undefined;
  /** Jails that exist locally; undefined when unknown (through the ban-helper). */
  jails: Set<string> | undefined;
  ignoreIp: string[];
  refresh(): Promise<void>;
}

/** What the subscriber learns from the local fail2ban: its jails and their ignoreip. */
async function localFail2ban(settings: SubscriberConfig, log: Logger): Promise<LocalFail2ban> {
  const a = settings.action;
  const state: LocalFail2ban = {
    executor: undefined,
    jails: undefined,
    ignoreIp: [],
    refresh: async () => {},
  };
  if (a.type !== "fail2ban") return state;
  if (a.helper) {
    // The helper re-validates every request as root; the subscriber cannot query fail2ban itself.
    if (!a.dryRun) state.executor = new BanHelperClient(a.helper);
    return state;
  }
  const client = new Fail2banClient({ client: a.client, timeoutMs: a.timeout, batchSize: a.batchSize });
  state.refresh = async () => {
    const jails = new Set(await client.jails());
    const targets =
      a.jail === "same" ? [...jails] : [a.jail, a.fallbackJail ?? "f2bz"].filter((j) => jails.has(j));
    const ignore: string[] = [];
    for (const jail of targets) {
      // ignoreip may hold names, `127.0.0.1/8` with host bits, or files: keep what is a valid range.
      for (const entry of await client.ignoreIp(jail)) {
        try {
          NeverBanList.create({ entries: [entry] });
          ignore.push(entry);
        } catch {
          log.debug({ jail, entry }, "ignoreip entry not usable as a never-ban range");
        }
      }
    }
    state.jails = jails;
    state.ignoreIp = ignore;
  };
  try {
    await state.refresh();
  } catch (error) {
    if (!a.dryRun) throw error;
    log.warn({ err: (error as Error).message }, "dry run: local fail2ban not reachable");
  }
  if (!a.dryRun) state.executor = client;
  return state;
}

/** The addresses of endpoints and peers (names resolved once at start), for the never-ban list. */
async function resolveAll(items: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const item of items) {
    const host = /^tcp:\/\/\[?([^\]]+?)\]?:[^:]+$/.exec(item)?.[1] ?? item;
    if (host === "*" || host.startsWith("ipc://")) continue;
    if (parseAddress(host, { allowCidr: true }).ok) {
      out.push(host);
      continue;
    }
    try {
      for (const r of await lookup(host, { all: true })) out.push(r.address);
    } catch {
      // Unresolvable now: the publisher connection will say so; nothing to protect yet.
    }
  }
  return out;
}
