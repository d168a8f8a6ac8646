import { once } from "node:events";
import { DEFAULT_CONFIG, loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { F2bzError, quote } from "../errors.js";
import { createLogger, type Logger } from "../logging.js";
import type { CommandContext } from "./command.js";

export interface Running {
  /** Stops in reverse order of start: drain, close sockets, close state. Idempotent. */
  close(): Promise<void>;
}

/**
 * The shared life cycle of the daemons: validate the config before opening anything, log JSON
 * (pretty on a terminal), run until SIGTERM/SIGINT, then stop cleanly; SIGHUP reopens the log file.
 */
export async function runDaemon<S extends "publisher" | "monitor" | "subscriber" | "banHelper">(
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
  });
  const logger = logging.logger.child({ node: config.node.name });
  ctx.onHangup(() => {
    logging.reopen();
    logger.info("log file reopened");
  });
  let running: Running | undefined;
  try {
    running = await start(config as Config & { [K in S]: NonNullable<Config[K]> }, logger, ctx.signal);
    logger.info({ config: file }, `${name} started`);
    if (!ctx.signal.aborted) await once(ctx.signal, "abort");
    logger.info(`${name} stopping`);
    return 0;
  } finally {
    await running?.close();
    if (running) logger.info(`${name} stopped`);
    logging.flush();
  }
}
