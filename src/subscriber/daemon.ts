import type { Config, SubscriberConfig } from "../config/schema.js";
import { loadSecretIdentity } from "../keys/files.js";
import { loadPinnedPublishers } from "../keys/pinned.js";
import type { Logger } from "../logging.js";
import { Metrics } from "../metrics/registry.js";
import { ResourceStack } from "../toolkit/resource-stack.js";
import { assertCurve } from "../transport/sockets.js";
import { Apply } from "./apply.js";
import { Checklist } from "./checklist.js";
import { createAction } from "./create-action.js";
import { Expiry } from "./expiry.js";
import { NeverBanSource } from "./never-ban-source.js";
import { OriginsWatcher } from "./origins.js";
import { PublisherReceiver } from "./receiver.js";
import { SubscriberStore } from "./store.js";

export type SubscriberSettings = Config & { subscriber: SubscriberConfig };

const HOUSEKEEPING_MS = 60_000;
/** How soon a key removed from subscriber.origins stops counting. */
const ORIGINS_POLL_MS = 1_000;

export interface RunningSubscriber {
  metrics: Metrics;
  store: SubscriberStore;
  close(): Promise<void>;
}

/**
 * The subscriber: follows every configured publisher (receiver.ts), checks each event
 * (checklist.ts) against the never-ban list and local jails (never-ban-source.ts), applies what
 * passes through its action (apply.ts), and lifts each applied ban itself when its last holder
 * expires (expiry.ts): fail2ban's `banip` takes no duration. It never publishes anything.
 * `signal` (the process's) stops its waits at once; `close()` then releases everything in reverse
 * order of opening.
 */
export async function startSubscriber(
  config: SubscriberSettings,
  logger: Logger,
  signal?: AbortSignal,
): Promise<RunningSubscriber> {
  assertCurve();
  const settings = config.subscriber;
  const log = logger.child({ component: "subscriber" });
  const identity = await loadSecretIdentity(config.node.identity);
  const publishers = await loadPinnedPublishers("subscriber", settings.publishers);
  const metrics = new Metrics("subscriber");
  const stopped = new AbortController();
  const stop = signal ? AbortSignal.any([signal, stopped.signal]) : stopped.signal;
  const resources = new ResourceStack((error) =>
    log.error({ err: error instanceof Error ? error.message : String(error) }, "closing failed"),
  );
  const close = () => {
    stopped.abort();
    return resources.close();
  };
  try {
    const local = resources.use(await NeverBanSource.open(settings, publishers, log));
    const store = resources.use(
      new SubscriberStore(config.node.stateDir, {
        ledger: !settings.action.dryRun && settings.action.type !== "log",
      }),
    );
    store.adoptPublishers(publishers);
    metrics.onCollect(() => metrics.set("bans_active", store.appliedCount()));
    const action = resources.use(createAction(settings, logger, metrics));
    const origins = settings.origins
      ? resources.use(
          await OriginsWatcher.open(settings.origins, {
            logger,
            metrics,
            pollMs: ORIGINS_POLL_MS,
            signal: stop,
          }),
        )
      : undefined;
    const expiry = resources.use(new Expiry({ store, action, metrics, logger, signal: stop }));
    const checklist = new Checklist({
      self: identity.nodeId,
      store,
      local,
      origins,
      allowCidr: config.events.allowCidr,
      target: settings.action,
      metrics,
      maxBanTimeMs: config.events.maxBanTime,
      windowMs: config.events.window,
    });
    const apply = new Apply({ checklist, store, action, expiry, target: settings.action, metrics, logger });

    // Bans that expired while we were down are lifted first; the others are applied again.
    await expiry.run();
    if (settings.action.type === "fail2ban" && !settings.action.dryRun) await apply.reapplyHeld();

    const receivers = publishers.map((p) =>
      resources.use(
        new PublisherReceiver({
          feed: p.feed,
          snapshot: p.snapshot,
          serverKey: p.identity.curvePublic,
          identity: { curvePublic: identity.curvePublic, curveSecret: identity.curveSecret },
          lastSeq: store.publisherSeq(p.name),
          saveSeq: (seq) => store.setPublisherSeq(p, seq),
          onEvent: (payload, signature, source) => apply.event(payload, signature, source),
          onExpire: (announced) => expiry.announced(announced),
          logger,
          metrics,
          signal: stop,
        }),
      ),
    );
    for (const r of receivers) r.start();
    metrics.onCollect(() => {
      const oldest = Math.min(...receivers.map((r) => r.heardAt));
      metrics.set("heartbeat_age_seconds", Math.max(0, Date.now() - oldest) / 1000);
      metrics.set("publishers_connected", receivers.filter((r) => r.connected).length);
    });

    const housekeeping = setInterval(() => {
      try {
        store.prune(Date.now());
        store.pruneSeen(Date.now() - 2 * config.events.window);
      } catch (error) {
        log.error({ err: (error as Error).message }, "state housekeeping failed");
      }
    }, HOUSEKEEPING_MS);
    resources.defer(() => clearInterval(housekeeping));

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
    return { metrics, store, close };
  } catch (error) {
    await close();
    throw error;
  }
}
