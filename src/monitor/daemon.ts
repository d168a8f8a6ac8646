import path from "node:path";
import type { Config, MonitorConfig } from "../config/schema.js";
import { Fail2banClient } from "../fail2ban/client.js";
import { loadSecretIdentity } from "../keys/files.js";
import { loadPinnedPublishers } from "../keys/pinned.js";
import type { Logger } from "../logging.js";
import { Metrics } from "../metrics/registry.js";
import { SUBSCRIBER_STATE_FILE } from "../state/files.js";
import { ResourceStack } from "../toolkit/resource-stack.js";
import { type Schedule, WakeUp } from "../toolkit/wake-up.js";
import { assertCurve } from "../transport/sockets.js";
import { BanTimes } from "./ban-times.js";
import { Committer } from "./committer.js";
import { PublisherLink } from "./delivery.js";
import { EventFactory } from "./event-factory.js";
import { type InterpreterState, LogInterpreter } from "./interpret.js";
import { LedgerReader } from "./ledger-reader.js";
import { openLogInput } from "./log-input.js";
import { Outbox } from "./outbox.js";
import { PublishableEvents } from "./publishable.js";
import { readLog } from "./reader.js";

export type MonitorSettings = Config & { monitor: MonitorConfig };

export interface MonitorOptions {
  /** The process's: its abort stops the monitor's loops as close() does. */
  signal?: AbortSignal;
  /** The clock events are signed and aged with, and the timers of waits and retries: tests inject them. */
  now?: () => number;
  schedule?: Schedule;
}

/** How often held unbans are released and the log position is saved when lines carry no event. */
const TICK_MS = 1_000;

export interface RunningMonitor {
  metrics: Metrics;
  outbox: Outbox;
  close(): Promise<void>;
}

/**
 * The monitor: reads fail2ban's log (file or journal), turns each real `Ban`/`Unban` into a signed
 * event, stores it in the durable outbox together with the log position, and delivers it to every
 * publisher until each acknowledged it. Bans of ignored jails and bans this host's subscriber applied
 * from the cluster (its ledger) are not published: they are echoes.
 *
 * Steps, each with its own state: the log input yields parsed entries; the reader feeds them to
 * the interpreter, pausing while the outbox is full; the committer (the outbox's one writer) signs
 * what is publishable and stores it with the position; one link per publisher delivers.
 */
export async function startMonitor(
  config: MonitorSettings,
  logger: Logger,
  options: MonitorOptions = {},
): Promise<RunningMonitor> {
  assertCurve();
  const settings = config.monitor;
  const log = logger.child({ component: "monitor" });
  const now = options.now ?? Date.now;
  const identity = await loadSecretIdentity(config.node.identity);
  const publishers = (await loadPinnedPublishers("monitor", settings.publishers)).map((p) => ({
    ...p,
    endpoint: p.submit,
  }));
  const metrics = new Metrics("monitor");
  // Closed in reverse: the abort first (every loop ends), the store last.
  const resources = new ResourceStack((error) =>
    log.error({ err: (error as Error).message }, "closing the monitor failed"),
  );
  const stop = new AbortController();
  const signal = stop.signal;
  const onAbort = () => stop.abort();
  try {
    const outbox = resources.use(new Outbox(config.node.stateDir, publishers));
    metrics.onCollect(() => metrics.set("outbox_events", outbox.size()));
    const source = settings.source;
    const input = await openLogInput(settings, {
      saved: outbox.position(source),
      signal,
      logger,
      metrics,
    });
    resources.use(input);
    const client = new Fail2banClient({ client: settings.client, timeoutMs: 10_000 });
    const banTimes = new BanTimes({
      settings,
      maxBanTimeMs: config.events.maxBanTime,
      ask: (jail) => client.run(["get", jail, "bantime"]),
      now,
      logger: log,
    });
    const interpreter = new LogInterpreter(
      {
        ignoreJails: settings.ignoreJails,
        holdUnbanMs: settings.unbanHold,
        metrics,
        now,
        onJailStarted: (jail) => banTimes.forget(jail),
      },
      outbox.interpreterState(source) as InterpreterState | undefined,
    );
    const ledger = resources.use(new LedgerReader(path.join(config.node.stateDir, SUBSCRIBER_STATE_FILE)));
    const events = new EventFactory(identity, banTimes, config.events.allowCidr, outbox, now);
    const room = new WakeUp(options.schedule);
    const links = publishers.map((p) =>
      resources.use(
        new PublisherLink({
          endpoint: p.submit,
          name: p.name,
          serverKey: p.identity.curvePublic,
          identity: { curvePublic: identity.curvePublic, curveSecret: identity.curveSecret },
          outbox,
          ackTimeoutMs: settings.ackTimeout,
          maxAgeMs: Math.floor(config.events.window / 2),
          refresh: (entry) => events.refresh(entry),
          onProgress: () => room.wake(),
          signal,
          now,
          ...(options.schedule ? { schedule: options.schedule } : {}),
          logger,
          metrics,
        }),
      ),
    );
    metrics.onCollect(() => metrics.set("publishers_connected", links.filter((l) => l.connected).length));
    const committer = new Committer({
      outbox,
      source,
      interpreter,
      publishable: new PublishableEvents({
        events,
        ledger,
        allowCidr: config.events.allowCidr,
        now,
        logger: log,
        metrics,
      }),
      onQueued: () => {
        for (const link of links) link.notify();
      },
      signal,
      ...(options.schedule ? { schedule: options.schedule } : {}),
      logger: log,
      metrics,
    });
    resources.defer(() => committer.flush());
    const reading = readLog(input, {
      interpreter,
      committer,
      outbox,
      limit: settings.outboxLimit,
      room,
      signal,
      logger: log,
      metrics,
    });
    resources.defer(() => reading);

    // Held unbans (see interpret.ts) are released by time, and positions of quiet lines saved; one
    // tick at a time: while a failing disk is retried, ticks do not pile up behind it.
    let ticking = false;
    const ticker = setInterval(() => {
      if (ticking) return;
      const released = interpreter.release();
      if (released.length === 0 && !committer.behind) return;
      ticking = true;
      void committer.commit(released).finally(() => {
        ticking = false;
      });
    }, TICK_MS);
    resources.defer(() => clearInterval(ticker));
    resources.defer(onAbort);
    if (options.signal?.aborted) stop.abort();
    else options.signal?.addEventListener("abort", onAbort, { once: true });
    resources.defer(() => options.signal?.removeEventListener("abort", onAbort));

    log.info(
      {
        source,
        log: source === "file" ? settings.log : settings.journalUnit,
        publishers: publishers.length,
        queued: outbox.size(),
      },
      "reading fail2ban's log",
    );
    return { metrics, outbox, close: () => resources.close() };
  } catch (error) {
    stop.abort();
    await resources.close().catch(() => {});
    throw error;
  }
}
