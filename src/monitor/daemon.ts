import { stat } from "node:fs/promises";
import path from "node:path";
import type { Config, MonitorConfig } from "../config/schema.js";
import { F2bzError, quote } from "../errors.js";
import { loadSecretIdentity } from "../keys/files.js";
import { keyHex, loadPinnedKey } from "../keys/store.js";
import { Counters, type Logger, RateLimitedLog, untrusted } from "../logging.js";
import { parseAddress } from "../policy/address.js";
import { isValidJail } from "../policy/jail.js";
import { SUBSCRIBER_STATE_FILE } from "../state/files.js";
import { assertCurve } from "../transport/sockets.js";
import { PublisherLink } from "./delivery.js";
import { EventFactory, type SignedEntry } from "./event-factory.js";
import { type InterpreterState, LogInterpreter, type MonitorEvent } from "./interpret.js";
import { JournalTailer } from "./journald.js";
import { LedgerReader } from "./ledger-reader.js";
import { Outbox, type Position } from "./outbox.js";
import type { LogRecord } from "./parse-line.js";
import { parseLogLine } from "./parse-line.js";
import { LogTailer } from "./tailer.js";

export type MonitorSettings = Config & { monitor: MonitorConfig };

/** How often the log position is saved when lines carry no event. */
const POSITION_SAVE_MS = 1_000;

export interface RunningMonitor {
  counters: Counters;
  outbox: Outbox;
  close(): Promise<void>;
}

/**
 * The monitor: reads fail2ban's log (file or journal), turns each real `Ban`/`Unban` into a signed
 * event, stores it in the durable outbox together with the log position, and delivers it to every
 * publisher until each acknowledged it. Bans of ignored jails and bans this host's subscriber applied
 * from the cluster (its ledger) are not published: they are echoes.
 */
export async function startMonitor(config: MonitorSettings, logger: Logger): Promise<RunningMonitor> {
  assertCurve();
  const settings = config.monitor;
  const log = logger.child({ component: "monitor" });
  const identity = await loadSecretIdentity(config.node.identity);
  const publishers = await pinnedPublishers(settings.publishers);
  const counters = new Counters();
  const outbox = new Outbox(config.node.stateDir, publishers);
  const source = settings.source;
  let input: LogTailer | JournalTailer;
  try {
    input =
      source === "file"
        ? new LogTailer({
            file: settings.log,
            start: filePosition(outbox.position("file")) ?? (await currentEnd(settings.log)),
            pollIntervalMs: settings.pollInterval,
            logger: logger.child({ component: "tailer" }),
            counters,
          })
        : new JournalTailer({
            unit: settings.journalUnit,
            ...journalCursor(outbox.position("journald")),
            logger: logger.child({ component: "journal" }),
            counters,
          });
  } catch (error) {
    outbox.close();
    throw error;
  }
  const interpreter = new LogInterpreter(
    { ignoreJails: settings.ignoreJails, holdUnbanMs: settings.unbanHold, counters },
    outbox.interpreterState(source) as InterpreterState | undefined,
  );
  const ledger = new LedgerReader(path.join(config.node.stateDir, SUBSCRIBER_STATE_FILE));
  const events = new EventFactory(identity, settings, config.events.allowCidr, outbox);

  let closed = false;
  /** Wakes the reader paused on a full outbox: an acknowledgement, a drop, or close. */
  let wakeReader: (() => void) | undefined;
  const links = publishers.map(
    (p) =>
      new PublisherLink({
        endpoint: p.submit,
        name: p.name,
        serverKey: p.identity.curvePublic,
        identity: { curvePublic: identity.curvePublic, curveSecret: identity.curveSecret },
        outbox,
        ackTimeoutMs: settings.ackTimeout,
        maxAgeMs: Math.floor(config.events.window / 2),
        refresh: (entry) => events.refresh(entry),
        onProgress: () => wakeReader?.(),
        logger,
        counters,
      }),
  );

  const dropLog = new RateLimitedLog(60_000, 3);
  const fullLog = new RateLimitedLog(60_000, 1);
  const errorLog = new RateLimitedLog(60_000, 1);
  let lastPosition: Position | undefined;
  /** Lines handled, and how many of them the stored position covers. */
  let handled = 0;
  let saved = 0;
  /** Commits run one at a time, in order: the reader's and the ticker's. */
  let queue: Promise<void> = Promise.resolve();
  const serially = (work: () => Promise<void>): Promise<void> => {
    const run = queue.then(work);
    queue = run.catch(() => {});
    return run;
  };
  let wakeRetry: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        wakeRetry = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      wakeRetry = done;
    });

  /** The events worth publishing, validated and checked against the echo ledger, then signed. */
  const sign = async (produced: MonitorEvent[]): Promise<SignedEntry[]> => {
    const entries: SignedEntry[] = [];
    const now = Date.now();
    for (const event of produced) {
      // fail2ban allows jail names (blanks, brackets, long names) that events cannot carry.
      if (!isValidJail(event.jail)) {
        dropped(
          "lines.invalid-jail",
          { jail: untrusted(event.jail, 60) },
          "ban of a jail name f2bz cannot carry ignored",
        );
        continue;
      }
      const address = unspecified(event.ip)
        ? ({ ok: false, reason: "unspecified address (how fail2ban logs a ban of a /0)" } as const)
        : parseAddress(event.ip, { allowCidr: config.events.allowCidr });
      if (!address.ok) {
        dropped(
          "lines.invalid-ip",
          { ip: untrusted(event.ip, 60), reason: address.reason },
          "log line with an invalid address ignored",
        );
        continue;
      }
      if (ledger.applied(event.kind, event.jail, address.ip, now)) {
        counters.inc("events.echo");
        log.debug(
          { kind: event.kind, jail: event.jail, ip: address.ip },
          "applied from the cluster: not published",
        );
        continue;
      }
      try {
        entries.push(await events.sign(event, address.ip));
      } catch (error) {
        // Refused by the receivers' own parser (say, a ban time of 0): retrying cannot help.
        if (!(error instanceof F2bzError && error.code === "MESSAGE_REJECTED")) throw error;
        dropped(
          "lines.unsignable",
          { err: error.message },
          "event that receivers would refuse not published",
        );
      }
    }
    return entries;
  };

  const dropped = (counter: string, fields: Record<string, unknown>, message: string) => {
    counters.inc(counter);
    const suppressed = dropLog.allow(counter);
    if (suppressed !== undefined) log.warn({ ...fields, suppressed }, message);
  };

  /**
   * Signs and stores what the interpreter produced, with the position and state it belongs to. A
   * failure (disk full, I/O error) is retried until it succeeds or the monitor stops: the reader
   * waits meanwhile, and nothing read is lost (what was not stored is read again after a restart).
   *
   * Position and state are taken now, with the events, not when the commit runs: a commit queued
   * behind another must not store a position past lines whose events the other has not stored.
   */
  const commit = (produced: MonitorEvent[]) => {
    const position = lastPosition;
    const state = interpreter.snapshot();
    const upTo = handled;
    return serially(async () => {
      for (;;) {
        try {
          const entries = await sign(produced);
          outbox.commit(source, entries, position, state);
          saved = Math.max(saved, upTo);
          for (const entry of entries) {
            counters.inc("events.published");
            log.info({ id: entry.id, kind: entry.kind, jail: entry.jail, ip: entry.ip }, "event queued");
          }
          if (entries.length > 0) for (const link of links) link.notify();
          return;
        } catch (error) {
          counters.inc("outbox.commit-failed");
          if (closed) return;
          const suppressed = errorLog.allow("commit");
          if (suppressed !== undefined) {
            log.error({ err: (error as Error).message, suppressed }, "saving monitor state failed; retrying");
          }
          await pause(1_000);
          if (closed) return;
        }
      }
    });
  };

  /**
   * Back-pressure: while the outbox is full, stop reading; the log keeps the lines for later.
   * False when the monitor stopped meanwhile (the line is then read again at the next start).
   */
  const roomInOutbox = async (): Promise<boolean> => {
    if (outbox.size() < settings.outboxLimit) return !closed;
    counters.inc("outbox.full");
    const suppressed = fullLog.allow("full");
    const announced = suppressed !== undefined;
    if (announced) {
      log.error(
        { limit: settings.outboxLimit, suppressed },
        "outbox full: publishers are not acknowledging; log reading paused",
      );
    }
    while (!closed && outbox.size() >= settings.outboxLimit) {
      await new Promise<void>((resolve) => {
        wakeReader = resolve;
      });
      wakeReader = undefined;
    }
    if (closed) return false;
    if (announced) log.info("outbox has room again: log reading resumed");
    return true;
  };

  const handle = async (record: LogRecord | undefined, position: Position) => {
    // Only a ban or unban line can add to the outbox; other lines are read on (a count per line
    // would cost a scan of a large outbox for every `Found`).
    const adds = record?.type === "ban" || record?.type === "unban";
    if (adds ? !(await roomInOutbox()) : closed) return;
    lastPosition = position;
    handled++;
    const produced = record ? interpreter.push(record) : [];
    if (produced.length > 0) await commit(produced);
  };

  const reading = (async () => {
    try {
      if (input instanceof LogTailer) {
        for await (const { line, position } of input) await handle(parseLogLine(line), position);
      } else {
        for await (const { record, cursor } of input) await handle(record, { cursor });
      }
    } catch (error) {
      if (!closed) log.error({ err: (error as Error).message }, "log input failed");
    }
  })();

  // Held unbans (see interpret.ts) are released by time, and positions of quiet lines saved.
  let ticking = false;
  const ticker = setInterval(() => {
    // One at a time: while a failing disk is retried, ticks do not pile up behind it.
    if (ticking) return;
    const released = interpreter.release();
    if (released.length === 0 && saved === handled) return;
    ticking = true;
    void commit(released).finally(() => {
      ticking = false;
    });
  }, POSITION_SAVE_MS);

  log.info(
    {
      source,
      log: source === "file" ? settings.log : settings.journalUnit,
      publishers: publishers.length,
      queued: outbox.size(),
    },
    "reading fail2ban's log",
  );

  let closing: Promise<void> | undefined;
  return {
    counters,
    outbox,
    close: () => {
      closing ??= (async () => {
        closed = true;
        clearInterval(ticker);
        input.close();
        wakeReader?.();
        wakeRetry?.();
        await reading;
        await queue;
        // The position of the last quiet lines, unless a failing disk is why we stop.
        if (saved < handled) {
          try {
            outbox.commit(source, [], lastPosition, interpreter.snapshot());
          } catch (error) {
            log.error({ err: (error as Error).message }, "saving the log position failed");
          }
        }
        await Promise.all(links.map((l) => l.close()));
        ledger.close();
        outbox.close();
      })();
      return closing;
    },
  };
}

/**
 * Each publisher with its pinned key, which names it in the outbox: two entries pinning one key
 * would share one queue, each taking the other's events away.
 */
async function pinnedPublishers(list: MonitorConfig["publishers"]) {
  const publishers = await Promise.all(
    list.map(async (p) => {
      const identity = await loadPinnedKey(p.key);
      return { ...p, identity, name: keyHex(identity.curvePublic), endpoint: p.submit };
    }),
  );
  for (const [i, p] of publishers.entries()) {
    const twin = publishers.findIndex((q) => q.name === p.name);
    if (twin !== i) {
      throw new F2bzError(
        "CONFIG_INVALID",
        `monitor.publishers[${i}] pins the same key as monitor.publishers[${twin}] (${quote(p.key)}): list each publisher once`,
      );
    }
  }
  return publishers;
}

/**
 * The first run starts at the end of the log as it is now, fixed before the monitor reports that it
 * reads: a line written after that report is never skipped. A log that does not exist yet is read
 * from its start once it appears.
 */
async function currentEnd(file: string): Promise<{ inode: number; offset: number } | "end"> {
  try {
    const st = await stat(file);
    return { inode: st.ino, offset: st.size };
  } catch {
    return "end";
  }
}

/**
 * `banip 0.0.0.0/0` is logged as `Ban 0.0.0.0` and `banip ::/0` as `Ban ::` (fail2ban-lab-findings
 * §7.1): single-host syntax for a ban of everything, never to be published.
 */
function unspecified(ip: string): boolean {
  const address = parseAddress(ip);
  return address.ok && (address.ip === "0.0.0.0" || address.ip === "::");
}

function filePosition(position: Position | undefined): { inode: number; offset: number } | undefined {
  return position && "inode" in position ? position : undefined;
}

function journalCursor(position: Position | undefined): { cursor?: string } {
  return position && "cursor" in position ? { cursor: position.cursor } : {};
}
