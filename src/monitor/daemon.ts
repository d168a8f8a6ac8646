import { stat } from "node:fs/promises";
import path from "node:path";
import type { Config, MonitorConfig } from "../config/schema.js";
import { loadPublicIdentity, loadSecretIdentity } from "../keys/files.js";
import type { SecretIdentity } from "../keys/identity.js";
import { Counters, type Logger, RateLimitedLog, untrusted } from "../logging.js";
import { parseAddress } from "../policy/address.js";
import { parseVerifiedPayload } from "../protocol/event.js";
import { signEvent } from "../protocol/signature.js";
import { type Db, openReadOnly } from "../state/database.js";
import { SUBSCRIBER_STATE_FILE, wasAppliedByCluster } from "../state/ledger.js";
import { assertCurve } from "../transport/sockets.js";
import { PublisherLink } from "./delivery.js";
import { type InterpreterState, LogInterpreter, type MonitorEvent } from "./interpret.js";
import { JournalTailer } from "./journald.js";
import { Outbox, type OutboxEntry, type Position } from "./outbox.js";
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
  const publishers = await Promise.all(
    settings.publishers.map(async (p) => ({ ...p, identity: await loadPublicIdentity(p.key) })),
  );
  const counters = new Counters();
  const outbox = new Outbox(
    config.node.stateDir,
    publishers.map((p) => p.submit),
  );
  const source = settings.source;
  const interpreter = new LogInterpreter(
    { ignoreJails: settings.ignoreJails, counters },
    outbox.interpreterState(source) as InterpreterState | undefined,
  );
  const ledger = new Ledger(path.join(config.node.stateDir, SUBSCRIBER_STATE_FILE));
  const events = new EventFactory(identity, settings, config.events.allowCidr, outbox);

  const links = publishers.map(
    (p) =>
      new PublisherLink({
        endpoint: p.submit,
        serverKey: p.identity.curvePublic,
        identity: { curvePublic: identity.curvePublic, curveSecret: identity.curveSecret },
        outbox,
        ackTimeoutMs: settings.ackTimeout,
        maxAgeMs: Math.floor(config.events.window / 2),
        refresh: (entry) => events.refresh(entry),
        logger,
        counters,
      }),
  );

  const dropLog = new RateLimitedLog(60_000, 3);
  let lastPosition: Position | undefined;
  let dirty = false;
  let closed = false;

  /** Signs and stores what the interpreter produced, with the position and state it belongs to. */
  const commit = async (produced: MonitorEvent[]) => {
    const entries: SignedEntry[] = [];
    const now = Date.now();
    for (const event of produced) {
      const address = parseAddress(event.ip, { allowCidr: config.events.allowCidr });
      if (!address.ok) {
        counters.inc("lines.invalid-ip");
        if (dropLog.allow("ip") !== undefined) {
          log.warn(
            { ip: untrusted(event.ip, 60), reason: address.reason },
            "log line with an invalid address ignored",
          );
        }
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
      entries.push(await events.sign(event, address.ip, entries.length));
    }
    outbox.commit(source, entries, lastPosition, interpreter.snapshot());
    dirty = false;
    for (const entry of entries) {
      counters.inc("events.published");
      log.info({ id: entry.id, kind: entry.kind, jail: entry.jail, ip: entry.ip }, "event queued");
    }
    if (entries.length > 0) for (const link of links) link.notify();
  };

  /** Back-pressure: while the outbox is full, stop reading (the log keeps it all for later). */
  const roomInOutbox = async () => {
    if (outbox.size() < settings.outboxLimit) return;
    log.error(
      { limit: settings.outboxLimit },
      "outbox full: publishers are not acknowledging; log reading paused",
    );
    counters.inc("outbox.full");
    while (!closed && outbox.size() >= settings.outboxLimit) await new Promise((r) => setTimeout(r, 1000));
    if (!closed) log.info("outbox has room again: log reading resumed");
  };

  const handle = async (record: LogRecord | undefined, position: Position) => {
    await roomInOutbox();
    lastPosition = position;
    const produced = record ? interpreter.push(record) : [];
    if (produced.length > 0) await commit(produced);
    else dirty = true;
  };

  const input =
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
  const ticker = setInterval(() => {
    const released = interpreter.release();
    const work = released.length > 0 ? commit(released) : dirty ? commit([]) : undefined;
    work?.catch((error: Error) => log.error({ err: error.message }, "saving monitor state failed"));
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
        await reading;
        if (dirty) await commit([]);
        await Promise.all(links.map((l) => l.close()));
        ledger.close();
        outbox.close();
      })();
      return closing;
    },
  };
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

function filePosition(position: Position | undefined): { inode: number; offset: number } | undefined {
  return position && "inode" in position ? position : undefined;
}

function journalCursor(position: Position | undefined): { cursor?: string } {
  return position && "cursor" in position ? { cursor: position.cursor } : {};
}

/** The subscriber's ledger on this host, opened read-only once the subscriber has created it. */
class Ledger {
  private db: Db | undefined;

  constructor(private readonly file: string) {}

  applied(kind: "ban" | "unban", jail: string, ip: string, now: number): boolean {
    this.db ??= openReadOnly(this.file);
    if (!this.db) return false;
    try {
      return wasAppliedByCluster(this.db, kind, jail, ip, now);
    } catch {
      // The subscriber's file exists but has no ledger yet (being created): nothing applied.
      this.db.close();
      this.db = undefined;
      return false;
    }
  }

  close(): void {
    this.db?.close();
  }
}

type SignedEntry = OutboxEntry & { kind: "ban" | "unban"; jail: string; ip: string };

/** Signs the monitor's events: per-origin sequence, the configured ban time per jail. */
class EventFactory {
  constructor(
    private readonly identity: SecretIdentity,
    private readonly settings: MonitorConfig,
    private readonly allowCidr: boolean,
    private readonly outbox: Outbox,
  ) {}

  /** `offset`: events already signed in this batch (their sequence numbers are not stored yet). */
  async sign(event: MonitorEvent, ip: string, offset: number): Promise<SignedEntry> {
    const time = Date.now();
    const banTime = this.settings.banTimes[event.jail] ?? this.settings.banTime;
    const expires = event.kind === "ban" ? time + banTime : time;
    return this.entry(event.kind, event.jail, ip, time, expires, this.outbox.nextSeq() + offset);
  }

  /**
   * An entry older than the publishers' window is signed again with a new sequence number and the
   * current time (same ban, same expiry); a ban whose expiry passed meanwhile is dropped.
   */
  async refresh(old: OutboxEntry): Promise<OutboxEntry | undefined> {
    const parsed = parseVerifiedPayload(old.payload, { allowCidr: this.allowCidr });
    const now = Date.now();
    if (!parsed.ok || (parsed.event.kind === "ban" && parsed.event.expires <= now)) {
      this.outbox.replace(old.id, undefined);
      return undefined;
    }
    const e = parsed.event;
    const fresh = await this.entry(
      e.kind,
      e.jail,
      e.ip,
      now,
      e.kind === "ban" ? e.expires : now,
      this.outbox.nextSeq(),
    );
    this.outbox.replace(old.id, fresh);
    return fresh;
  }

  private async entry(
    kind: "ban" | "unban",
    jail: string,
    ip: string,
    time: number,
    expires: number,
    seq: number,
  ): Promise<SignedEntry> {
    const signed = await signEvent(
      this.identity,
      { seq, kind, jail, ip, time, expires },
      { allowCidr: this.allowCidr },
    );
    return {
      id: signed.event.id,
      seq,
      time,
      expires,
      payload: signed.payload,
      signature: signed.signature,
      kind,
      jail,
      ip: signed.event.ip,
    };
  }
}
