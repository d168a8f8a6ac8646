import path from "node:path";
import type * as zmq from "zeromq";
import type { Config, PublisherConfig } from "../config/schema.js";
import { loadSecretIdentity } from "../keys/files.js";
import type { Logger } from "../logging.js";
import type { LabelsOf } from "../metrics/catalogue.js";
import { Metrics } from "../metrics/registry.js";
import { hostAddresses, NeverBanList } from "../policy/never-ban.js";
import { encodeExpire, encodeHeartbeat, encodeUpdate, TOPIC_UPDATE } from "../protocol/feed.js";
import { encodeNack } from "../protocol/submit.js";
import { PUBLISHER_STATE_FILE } from "../state/files.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { ResourceStack } from "../toolkit/resource-stack.js";
import { AccessControl } from "../transport/access.js";
import { BoundEndpoint } from "../transport/endpoint.js";
import {
  assertCurve,
  createServerSocket,
  createTransportContext,
  type ZapDomain,
} from "../transport/sockets.js";
import { FEED_INBOUND_MAX_BYTES, gateSubscriptions } from "../transport/subscription-gate.js";
import { ZapHandler } from "../transport/zap.js";
import { Intake } from "./intake.js";
import { PeerGauge } from "./peers.js";
import { RevokedPurger } from "./purge.js";
import { OriginLimiter } from "./rate-limit.js";
import { SnapshotReader } from "./snapshot-reader.js";
import { type Send, SnapshotServer, serialSender } from "./snapshot-server.js";
import { type Expiry, PublisherStore } from "./store.js";

export type PublisherSettings = Config & { publisher: PublisherConfig };

/** How often the publisher tells subscribers its current sequence number, so gaps show quickly. */
export const HEARTBEAT_MS = 1_000;
const PRUNE_MS = 1_000;

export interface RunningPublisher {
  /** The concrete endpoints (a `*` port resolved), for tests and the demo. */
  endpoints: { submit: string; feed: string; snapshot: string };
  metrics: Metrics;
  store: PublisherStore;
  /** Rejects with BIND_FAILED when an endpoint lost its port on a rebind: the process must exit. */
  fatal: Promise<never>;
  close(): Promise<void>;
}

type Task = LabelsOf<"task_failures_total">["task"];

/** Requests gathered into one group commit at most; more wait for the next one. */
const MAX_SUBMIT_BATCH = 1024;
const EMPTY = Buffer.alloc(0);

/**
 * The publisher: takes signed events from authorized monitors on `submit` (ROUTER, for REQ clients), re-broadcasts
 * the ones that change the active set on `feed` (PUB) with its own sequence number, and serves
 * the active set on `snapshot` (ROUTER) so that subscribers that (re)join or see a gap catch up.
 */
export async function startPublisher(config: PublisherSettings, logger: Logger): Promise<RunningPublisher> {
  assertCurve();
  const settings = config.publisher;
  const log = logger.child({ component: "publisher" });
  const identity = await loadSecretIdentity(config.node.identity);
  const metrics = new Metrics("publisher");
  const store = new PublisherStore(config.node.stateDir);
  metrics.onCollect(() => {
    metrics.set("bans_active", store.activeCount());
    metrics.set("publisher_sequence", store.publisherSeq);
  });
  const context = createTransportContext();
  // Closed in reverse order of opening: timers, endpoints (which ends the loops), then the loops
  // are awaited, then the ZAP handler, the key watcher and the store.
  const resources = new ResourceStack();
  resources.use(store);
  // Threat: an endpoint that lost its port (another process took it during a rebind) would leave
  // the publisher running without it, unnoticed by the service manager.
  let fail!: (error: unknown) => void;
  const fatal = new Promise<never>((_, reject) => {
    fail = reject;
  });
  fatal.catch(() => {});
  const rebind = (endpoint: BoundEndpoint<zmq.Socket>, what: string) =>
    endpoint.rebind().catch((error: Error) => {
      log.error({ err: error.message }, `${what} rebind failed`);
      fail(error);
    });
  const bindOptions = {
    onHandoverFailed: (error: unknown) =>
      log.warn(
        { err: error instanceof Error ? error.message : String(error) },
        "listener hand-over failed: re-binding by close and bind",
      ),
  };
  try {
    const endpoints: Partial<Record<ZapDomain, BoundEndpoint<zmq.Socket>[]>> = {};
    const access = await AccessControl.open(settings.keys, {
      logger,
      metrics,
      maxPending: settings.maxPending,
      onRemoved: (domain) => {
        log.warn({ domain }, "a key was removed or revoked: dropping live connections");
        for (const endpoint of endpoints[domain] ?? []) void rebind(endpoint, domain);
      },
    });
    resources.use(access);
    const zap = await ZapHandler.start({
      context,
      registry: access,
      logger,
      metrics,
      onUnknown: access.recordUnknown,
    });
    resources.use(zap);
    // After the endpoints close (which ends the loops): the snapshot streams, then the loops.
    let snapshots: SnapshotServer | undefined;
    let loops: Promise<void>[] = [];
    resources.defer(async () => {
      await snapshots?.close();
      await Promise.allSettled(loops);
    });

    const curve = { curvePublic: identity.curvePublic, curveSecret: identity.curveSecret };
    const submit = await BoundEndpoint.open(
      () => createServerSocket("router", { context, identity: curve, domain: "submit" }),
      settings.submit,
      bindOptions,
    );
    resources.use(submit);
    const feed = await BoundEndpoint.open(
      () => {
        const socket = createServerSocket("xpublisher", {
          context,
          identity: curve,
          domain: "feed",
          sendHighWaterMark: 10_000,
          // Inbound on the feed is subscriptions only: a larger frame ends that peer's connection.
          maxMessageSize: FEED_INBOUND_MAX_BYTES,
        });
        // zeromq.js defers every 513th send to the next loop turn (so as not to starve the loop) and
        // throws EBUSY, synchronously, at any send made meanwhile: part of a burst of expiries (or a
        // heartbeat in the same turn as an update) would be lost, or throw out of the timer. PUB
        // never blocks (it drops at a subscriber's high-water mark): a zero timeout makes every send
        // immediate, and none is deferred.
        socket.sendTimeout = 0;
        return socket;
      },
      settings.feed,
      bindOptions,
    );
    resources.use(feed);
    const snapshot = await BoundEndpoint.open(
      () => createServerSocket("router", { context, identity: curve, domain: "feed" }),
      settings.snapshot,
      bindOptions,
    );
    resources.use(snapshot);
    endpoints.submit = [submit];
    endpoints.feed = [feed, snapshot];

    // PUB never blocks: a slow subscriber loses messages at its high-water mark (and repairs the
    // gap from a snapshot) instead of delaying the others. A failed send (the endpoint closing or
    // being re-bound) is a gap too: never an exception in a timer or after an event was stored.
    const failLog = new LimitedLog(log, new RateLimitedLog(60_000, 3));
    const failed = (what: Task, error: unknown) => {
      metrics.inc("task_failures_total", { task: what });
      failLog.error(what, { err: error instanceof Error ? error.message : String(error) }, `${what} failed`);
    };
    const publish = (frames: Buffer[]) => {
      try {
        feed.socket.send(frames).catch((error: unknown) => failed("feed-send", error));
      } catch (error) {
        failed("feed-send", error);
      }
    };
    const every = (ms: number, what: Task, task: () => void) =>
      setInterval(() => {
        try {
          task();
        } catch (error) {
          failed(what, error);
        }
      }, ms);

    const intake = new Intake({
      store,
      isAuthorizedOrigin: (origin, key) => access.isAuthorizedOrigin(origin, key),
      neverBan: NeverBanList.create({ hostAddresses: hostAddresses() }),
      limiter: new OriginLimiter(settings),
      windowMs: config.events.window,
      maxBanTimeMs: config.events.maxBanTime,
      allowCidr: config.events.allowCidr,
      maxActivePerOrigin: settings.maxActivePerOrigin,
      broadcast: (payload, signature, seq) => publish(encodeUpdate(payload, signature, seq)),
      metrics,
      logger: log,
    });

    const stateFile = path.join(config.node.stateDir, PUBLISHER_STATE_FILE);
    snapshots = new SnapshotServer({
      open: (now) => new SnapshotReader(stateFile, now),
      metrics,
      logger: log,
    });
    const serving: Serving = { log, metrics, rebind };
    loops = [
      serveSubmit(submit, intake, serving),
      serveSnapshots(snapshot, snapshots, serving),
      serveSubscriptions(feed, serving),
    ];

    const announceExpiry = (expiry: Expiry) =>
      publish(encodeExpire({ jail: expiry.jail, ip: expiry.ip, id: expiry.id }, expiry.publisherSeq));
    const purger = new RevokedPurger({
      keysDir: settings.keys,
      store,
      isAuthorizedOrigin: (origin, key) => access.isAuthorizedOrigin(origin, key),
      announce: announceExpiry,
      metrics,
      logger: log,
    });
    const timers = [
      every(PRUNE_MS, "prune", () => {
        for (const expiry of store.pruneExpired(Date.now())) {
          announceExpiry(expiry);
          metrics.inc("bans_expired_total");
        }
      }),
      every(PRUNE_MS, "purge", () => void purger.run().catch((error: unknown) => failed("purge", error))),
      every(HEARTBEAT_MS, "heartbeat", () => publish(encodeHeartbeat(store.publisherSeq))),
      every(60_000, "prune-seen", () => store.pruneSeen(Date.now() - 2 * config.events.window)),
    ];
    resources.defer(() => timers.forEach(clearInterval));

    log.info(
      { submit: submit.address, feed: feed.address, snapshot: snapshot.address, active: store.activeCount() },
      "listening",
    );
    return {
      endpoints: { submit: submit.address, feed: feed.address, snapshot: snapshot.address },
      metrics,
      store,
      fatal,
      close: () => resources.close(),
    };
  } catch (error) {
    await resources.close();
    throw error;
  }
}

/**
 * The submit endpoint is a ROUTER, so that requests of all monitors are served together: what
 * arrives while a batch is being verified and committed forms the next batch (group commit, one
 * fsync for all). Monitors keep their REQ sockets: a request is [routingId, "", ...frames] and the
 * reply goes back the same way. Replies are sent only after the batch committed.
 */
function serveSubmit(endpoint: BoundEndpoint<zmq.Router>, intake: Intake, serving: Serving) {
  const { log, metrics } = serving;
  return serveEach(endpoint, "submit", serving, async (socket) => {
    const waiting: { routingId: Buffer; frames: Buffer[] }[] = [];
    let draining: Promise<void> | undefined;
    // `draining` is cleared in the same turn as the check that found nothing waiting, so a request
    // that arrives afterwards always starts a new drain.
    const drain = async () => {
      try {
        while (waiting.length > 0 && !socket.closed) {
          const batch = waiting.splice(0, MAX_SUBMIT_BATCH);
          const replies = await intake.handleBatch(batch.map((r) => r.frames)).catch((error: Error) => {
            metrics.inc("submissions_failed_total");
            log.error({ err: error.message }, "intake failed");
            return batch.map(() => encodeNack("", "busy"));
          });
          for (const [i, request] of batch.entries()) {
            if (socket.closed) return;
            await socket.send([request.routingId, EMPTY, ...replies[i]!]);
          }
        }
      } finally {
        draining = undefined;
      }
    };
    for await (const [routingId, delimiter, ...frames] of socket) {
      // Untrusted: only a REQ envelope (an empty delimiter) can be answered; anything else is noise.
      if (routingId === undefined || delimiter === undefined || delimiter.length > 0) continue;
      waiting.push({ routingId, frames });
      draining ??= drain();
    }
    await draining;
  });
}

function serveSnapshots(endpoint: BoundEndpoint<zmq.Router>, snapshots: SnapshotServer, serving: Serving) {
  return serveEach(endpoint, "snapshot", serving, async (socket) => {
    const send: Send = serialSender(socket);
    for await (const [routingId, ...frames] of socket) snapshots.handle(routingId, frames, send);
  });
}

function serveSubscriptions(endpoint: BoundEndpoint<zmq.XPublisher>, serving: Serving) {
  const { log, metrics } = serving;
  const gate = { topic: TOPIC_UPDATE, metrics, dropLog: new LimitedLog(log.child({ component: "feed" })) };
  return serveEach(endpoint, "feed", serving, (socket) => gateSubscriptions(socket, gate));
}

/**
 * Runs `serve` on the endpoint's socket, then on each replacement, until the endpoint closes; the
 * connections of each socket are counted meanwhile.
 */
async function serveEach<S extends zmq.Socket>(
  endpoint: BoundEndpoint<S>,
  what: LabelsOf<"endpoint_rebinds_total">["endpoint"],
  serving: Serving,
  serve: (socket: S) => Promise<void>,
): Promise<void> {
  const peers = new PeerGauge(serving.metrics, what);
  const counted: Promise<void>[] = [];
  for await (const socket of endpoint.sockets()) {
    counted.push(peers.watch(socket));
    try {
      await serve(socket);
    } catch (error) {
      if (!socket.closed) recover(endpoint, what, error, serving);
    }
  }
  await Promise.all(counted);
}

/**
 * A receive loop that failed on a socket still open would leave its endpoint bound but unanswered
 * (clients time out for ever): a fresh socket takes over, and the loop resumes on it.
 */
function recover(
  endpoint: BoundEndpoint<zmq.Socket>,
  what: LabelsOf<"endpoint_rebinds_total">["endpoint"],
  error: unknown,
  { log, metrics, rebind }: Serving,
): void {
  metrics.inc("endpoint_rebinds_total", { endpoint: what });
  log.error(
    { err: error instanceof Error ? error.message : String(error) },
    `${what} loop failed: re-binding`,
  );
  void rebind(endpoint, what);
}

/**
 * What the serve loops share. `rebind` replaces an endpoint's socket and, when that loses the port,
 * stops the daemon (exit 69): a publisher running on without an endpoint goes unnoticed.
 */
interface Serving {
  log: Logger;
  metrics: Metrics;
  rebind: (endpoint: BoundEndpoint<zmq.Socket>, what: string) => Promise<void>;
}
