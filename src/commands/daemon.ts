import { once } from "node:events";
import { fstatSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { DEFAULT_CONFIG, loadConfig } from "../config/load.js";
import type { ListenAddress } from "../config/loopback.js";
import type { Config } from "../config/schema.js";
import { configWarnings } from "../config/warnings.js";
import { F2bzError, quote } from "../errors.js";
import { createLogger, isJournalStream, type Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import type { CommandContext } from "./command.js";

export interface Running {
  /** Stops in reverse order of start: drain, close sockets, close state. Idempotent. */
  close(): Promise<void>;
  /** The daemon's metrics (the catalogue's), served when metrics are configured. */
  metrics?: Metrics;
  /**
   * Rejects when the daemon can no longer serve (an endpoint lost its port): it then stops and
   * exits non-zero, so that the service manager restarts it rather than leave it half deaf.
   */
  fatal?: Promise<never>;
}

type Section = "publisher" | "monitor" | "subscriber" | "banHelper";

/**
 * Where a daemon serves /metrics: its own `metrics.<section>`, else `metrics.listen`; the root
 * ban-helper only at its own (its unit allows no IP, and it should open no port unasked).
 */
export function metricsAddress(config: Config, section: Section): ListenAddress | undefined {
  const metrics = config.metrics;
  if (!metrics) return undefined;
  return section === "banHelper" ? metrics.banHelper : (metrics[section] ?? metrics.listen);
}

/**
 * The shared life cycle of the daemons: validate the config before opening anything, log JSON
 * (pretty on a terminal), run until SIGTERM/SIGINT, then stop cleanly; SIGHUP reopens the log file.
 */
export async function runDaemon<S extends Section>(
  ctx: CommandContext,
  section: S,
  start: (
    config: Config & { [K in S]: NonNullable<Config[K]> },
    logger: Logger,
    signal: AbortSignal,
  ) => Promise<Running>,
): Promise<number> {
  const file = typeof ctx.values.config === "string" ? ctx.values.config : DEFAULT_CONFIG;
  const config = await loadConfig(file);
  if (config[section] === undefined) {
    throw new F2bzError("CONFIG_INVALID", `config ${quote(file)} has no '${section}' section`);
  }
  const name = section === "banHelper" ? "ban-helper" : section;
  const logging = createLogger(name, {
    level: config.logging.level,
    pretty: ctx.tty && config.logging.file === undefined,
    ...(config.logging.file ? { file: config.logging.file } : {}),
    journal: isJournalStream(ctx.env, stdoutStat()),
  });
  const logger = logging.logger.child({ node: config.node.name });
  // What check-config warns about in this daemon's section: it starts anyway (the directory may come).
  for (const w of await configWarnings(config, file)) if (w.section === section) logger.warn(w.message);
  ctx.onHangup(() => {
    logging.reopen();
    logger.info("log file reopened");
  });
  let running: Running | undefined;
  let metrics: { close(): Promise<void> } | undefined;
  try {
    running = await start(config as Config & { [K in S]: NonNullable<Config[K]> }, logger, ctx.signal);
    const address = metricsAddress(config, section);
    if (address) {
      // Loaded on use: a ban-helper without metrics never loads node:http.
      const { MetricsServer } = await import("../metrics/server.js");
      const version = await packageVersion();
      metrics = await MetricsServer.listen({ address, process: name, version, source: running, logger });
    }
    logger.info({ config: file }, `${name} started`);
    if (!ctx.signal.aborted)
      await Promise.race([once(ctx.signal, "abort"), running.fatal ?? new Promise(() => {})]);
    logger.info(`${name} stopping`);
    return 0;
  } finally {
    // Metrics first: a scrape must never read a daemon's state while it is being closed.
    await metrics?.close();
    await running?.close();
    if (running) logger.info(`${name} stopped`);
    logging.flush();
  }
}

function stdoutStat(): { dev: number; ino: number } | undefined {
  try {
    return fstatSync(1);
  } catch {
    return undefined;
  }
}

async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}
