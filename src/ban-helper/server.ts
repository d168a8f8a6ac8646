import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { F2bzError, quote } from "../errors.js";
import type { BanExecutor } from "../fail2ban/executor.js";
import { MAX_LINE_BYTES } from "../fail2ban/helper-protocol.js";
import { checkTrustedDir } from "../fail2ban/helper-socket.js";
import type { Logger } from "../logging.js";
import { Metrics } from "../metrics/registry.js";
import type { NeverBanList } from "../policy/never-ban.js";
import { LimitedLog } from "../toolkit/limited-log.js";
import { HelperLedger } from "./ledger.js";
import { checkRequest, type Refusal, token } from "./request.js";

export interface BanHelperServerOptions {
  /** Where to listen: a path this server creates (and removes on close) ... */
  socket: string;
  /** ... or a listening socket inherited from systemd (fd 3); then `socket` is only a label. */
  fd?: number;
  /** Group (numeric gid) that may connect: the socket becomes root:group 0660. */
  gid?: number;
  executor: BanExecutor;
  /** Where it counts requests and refusals (a fresh registry by default). */
  metrics?: Metrics;
  /** The only jails it touches; required and non-empty. */
  jails: readonly string[];
  /** A function when the list changes while running (this host's addresses are re-read). */
  neverBan: NeverBanList | (() => NeverBanList);
  /** Root's own directory for the ledger of what this helper banned (created 0700). */
  stateDir: string;
  /**
   * What fail2ban holds in a jail, asked before each BAN: an address fail2ban banned on its own is
   * not recorded as the helper's, so no UNBAN through the helper can lift it.
   */
  banned?: (jail: string) => Promise<readonly string[]>;
  /**
   * The jail's own `ignoreip` as a list, consulted for every BAN: `banip` bypasses it, and the
   * unprivileged caller cannot read it. A lookup that fails refuses the ban (fail closed).
   */
  ignoreList?: (jail: string) => Promise<NeverBanList>;
  logger: Logger;
  /** A client has this long to send its line (default 5 s): a slow client holds only its own slot. */
  requestTimeoutMs?: number;
  /** Connections at once (default 16); more are answered `ERR busy` and closed. */
  maxConnections?: number;
  /** fail2ban-client calls at once (default 2); each one is a Python process start. */
  maxCalls?: number;
}

/**
 * The root ban-helper: a unix socket that turns one checked line into one fail2ban-client call.
 * It carries no network code; its only input is the line, re-validated in full whatever the caller
 * already checked, since the caller is exactly what this process must not trust.
 */
export class BanHelperServer {
  readonly metrics: Metrics;
  private readonly server: net.Server;
  private readonly jails: ReadonlySet<string>;
  private ledger: HelperLedger | undefined;
  private readonly log: Logger;
  private readonly limited: LimitedLog;
  private readonly connections = new Set<Promise<void>>();
  /** Connections still sending their line: dropped at close, they have nothing in flight. */
  private readonly reading = new Set<net.Socket>();
  private readonly calls: Semaphore;
  private readonly requestTimeoutMs: number;
  private readonly maxConnections: number;
  private ownsPath = false;
  private closing: Promise<void> | undefined;

  private constructor(private readonly options: BanHelperServerOptions) {
    this.metrics = options.metrics ?? new Metrics("ban-helper");
    this.jails = new Set(options.jails);
    this.log = options.logger.child({ component: "ban-helper" });
    this.limited = new LimitedLog(this.log);
    this.calls = new Semaphore(options.maxCalls ?? 2);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.maxConnections = options.maxConnections ?? 16;
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  static async listen(options: BanHelperServerOptions): Promise<BanHelperServer> {
    // An empty list once meant "any jail": then `UNBAN sshd …` lifted fail2ban's own bans.
    if (options.jails.length === 0) {
      throw new F2bzError("CONFIG_INVALID", "banHelper.jails is empty, expected the jails it may touch");
    }
    const helper = new BanHelperServer(options);
    if (options.fd === undefined) {
      // Whoever may write the directory can swap the socket for their own, or make a chmod/chown by
      // path land on their file; in a directory only root may change, the path stays ours.
      await checkTrustedDir("ban-helper socket directory", path.dirname(options.socket), "BIND_FAILED");
    }
    helper.ledger = await HelperLedger.open(options.stateDir);
    try {
      await helper.bind();
    } catch (error) {
      helper.ledger.close();
      throw error;
    }
    return helper;
  }

  get socketPath(): string {
    return this.options.socket;
  }

  /** Stops accepting, lets calls in flight finish, removes the socket file it created. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const socket of this.reading) socket.destroy();
      await Promise.allSettled([...this.connections]);
      await closed;
      if (this.ownsPath) await fs.rm(this.options.socket, { force: true });
      this.ledger?.close();
      this.log.info({ counters: this.metrics.summary() }, "socket closed");
    })();
    return this.closing;
  }

  private async bind(): Promise<void> {
    const { socket, fd, gid } = this.options;
    if (fd !== undefined) {
      await this.listenOn({ fd });
      this.log.info({ fd, socket }, "listening on the socket systemd passed");
      return;
    }
    await removeStaleSocket(socket);
    // Created root:<gid> 0660 by bind itself (umask and effective gid), never chmod-ed or chown-ed
    // by path afterwards: no window, and no path an attacker could redirect.
    await this.listenOn({ path: socket }, () => {
      const previousMask = process.umask(0o117);
      const previousGid = process.getegid?.();
      try {
        if (gid !== undefined) setEgid(gid, socket);
      } catch (error) {
        process.umask(previousMask);
        throw error;
      }
      return () => {
        if (gid !== undefined && previousGid !== undefined) process.setegid?.(previousGid);
        process.umask(previousMask);
      };
    });
    this.ownsPath = true;
    this.log.info({ socket, gid }, "listening");
  }

  /**
   * `around` sets the process state the bind needs and returns what restores it: listen() binds
   * synchronously for a path, so umask and effective gid apply to the socket file and are restored
   * before anything else runs.
   */
  private listenOn(where: { path: string } | { fd: number }, around?: () => () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException) => {
        reject(
          new F2bzError(
            "BIND_FAILED",
            `cannot listen on ${quote(this.options.socket)}: ${error.code ?? error.message}`,
          ),
        );
      };
      this.server.once("error", onError);
      const restore = around?.();
      try {
        this.server.listen(where, () => {
          this.server.off("error", onError);
          resolve();
        });
      } finally {
        restore?.();
      }
    });
  }

  private accept(socket: net.Socket): void {
    socket.on("error", () => {}); // a client that goes away mid-answer is not an error of the helper
    if (this.closing || this.connections.size >= this.maxConnections) {
      this.metrics.inc("helper_requests_refused_total", { reason: "busy" });
      this.warn("busy", "too many connections, refused");
      // Destroyed once written: its request is never read, so its end would never be seen.
      socket.end("ERR busy\n", () => socket.destroy());
      return;
    }
    const done = this.serve(socket).finally(() => {
      this.connections.delete(done);
      socket.destroy();
    });
    this.connections.add(done);
  }

  private async serve(socket: net.Socket): Promise<void> {
    this.reading.add(socket);
    const read = await readLine(socket, this.requestTimeoutMs);
    this.reading.delete(socket);
    if (!read.ok) {
      this.refuse(read.code, read.reason);
      await answer(socket, `ERR ${read.reason}`);
      return;
    }
    const neverBan =
      typeof this.options.neverBan === "function" ? this.options.neverBan() : this.options.neverBan;
    const checked = checkRequest(read.line, { jails: this.jails, neverBan });
    if (!checked.ok) {
      this.refuse(checked.code, checked.reason);
      await answer(socket, `ERR ${checked.reason}`);
      return;
    }
    const { verb, jail, ips } = checked;
    if (verb === "BAN" && this.options.ignoreList) {
      const ignored = await this.ignored(jail, ips);
      if (ignored) {
        this.refuse(ignored.code, ignored.reason);
        await answer(socket, `ERR ${ignored.reason}`);
        return;
      }
    }
    const release = await this.calls.acquire();
    try {
      const reply = verb === "BAN" ? await this.ban(jail, ips) : await this.unban(jail, ips);
      await answer(socket, reply);
    } catch (error) {
      this.metrics.inc("helper_requests_total", { verb: verb === "BAN" ? "ban" : "unban", result: "failed" });
      this.log.error({ verb, jail, ips, err: (error as Error).message }, "fail2ban-client failed");
      await answer(socket, "ERR fail2ban failed");
    } finally {
      release();
    }
  }

  /** Bans, then records as the helper's what fail2ban did not already hold. */
  private async ban(jail: string, ips: string[]): Promise<string> {
    const ledger = this.ledger!;
    const before = this.options.banned ? new Set(await this.options.banned(jail)) : new Set<string>();
    const count = await this.options.executor.ban(jail, ips);
    ledger.record(
      jail,
      ips.filter((ip) => !before.has(ip)),
      Date.now(),
    );
    this.metrics.inc("helper_requests_total", { verb: "ban", result: "ok" });
    this.log.info({ verb: "BAN", jail, ips, count }, "applied");
    return `OK ${count}`;
  }

  /**
   * Lifts only the pairs the ledger holds: the others (fail2ban's own bans, other callers' guesses)
   * are refused, counted per address, and named in the answer.
   */
  private async unban(jail: string, ips: string[]): Promise<string> {
    const ledger = this.ledger!;
    const held = ledger.held(jail, ips);
    const refused = ips.filter((ip) => !held.includes(ip));
    let count = 0;
    if (held.length > 0) {
      count = await this.options.executor.unban(jail, held);
      ledger.remove(jail, held);
      this.metrics.inc("helper_requests_total", { verb: "unban", result: "ok" });
      this.log.info({ verb: "UNBAN", jail, ips: held, count }, "applied");
    }
    if (refused.length === 0) return `OK ${count}`;
    const reason = `not banned by the helper ${token(refused[0]!)}`;
    this.metrics.inc("helper_requests_refused_total", { reason: "not-held" }, refused.length - 1);
    this.refuse("not-held", reason);
    return `ERR ${reason}${refused.length > 1 ? ` and ${refused.length - 1} more` : ""}${
      held.length > 0 ? `, ${held.length} lifted` : ""
    }`;
  }

  /** A refusal reason when an address is in the jail's ignoreip, or the list cannot be read. */
  private async ignored(jail: string, ips: readonly string[]): Promise<Refused | undefined> {
    try {
      const list = await this.options.ignoreList!(jail);
      const hit = ips.find((ip) => list.contains(ip));
      return hit === undefined ? undefined : { code: "ignoreip", reason: `ignoreip address ${token(hit)}` };
    } catch (error) {
      this.log.warn({ jail, err: (error as Error).message }, "cannot read the jail's ignoreip");
      return { code: "ignoreip-unreadable", reason: "cannot read ignoreip" };
    }
  }

  private refuse(code: Refusal, reason: string): void {
    this.metrics.inc("helper_requests_refused_total", { reason: code });
    this.warn(code, "request refused", reason);
  }

  private warn(key: string, message: string, reason?: string): void {
    this.limited.warn(key, { reason: reason ?? key }, message);
  }
}

type Refused = { code: Refusal; reason: string };
type LineResult = { ok: true; line: Buffer } | ({ ok: false } & Refused);

/** Reads exactly one line of at most MAX_LINE_BYTES (newline included) within `timeoutMs`. */
function readLine(socket: net.Socket, timeoutMs: number): Promise<LineResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: LineResult) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const all = Buffer.concat(chunks, size);
      const newline = all.indexOf(0x0a);
      if (newline === -1) {
        if (size >= MAX_LINE_BYTES) finish({ ok: false, code: "line-too-long", reason: "line too long" });
        return;
      }
      if (newline + 1 > MAX_LINE_BYTES) {
        return finish({ ok: false, code: "line-too-long", reason: "line too long" });
      }
      if (newline + 1 < size) {
        return finish({ ok: false, code: "not-one-request", reason: "one request per connection" });
      }
      finish({ ok: true, line: all.subarray(0, newline) });
    };
    const onEnd = () =>
      finish(
        size === 0
          ? { ok: false, code: "empty", reason: "empty request" }
          : { ok: false, code: "missing-newline", reason: "missing newline" },
      );
    const timer = setTimeout(() => finish({ ok: false, code: "timeout", reason: "timeout" }), timeoutMs);
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
  });
}

/** Writes the one answer line and half-closes; resolves when written or when the client is gone. */
function answer(socket: net.Socket, line: string): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || !socket.writable) return resolve();
    socket.end(`${line}\n`, () => resolve());
    socket.once("close", () => resolve());
  });
}

/**
 * Removes a socket file left by a helper that died; refuses to touch anything that is not a socket,
 * or a socket that something still listens on.
 */
async function removeStaleSocket(socket: string): Promise<void> {
  const stat = await fs.lstat(socket).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw new F2bzError("BIND_FAILED", `cannot inspect ${quote(socket)}: ${error.code ?? error.message}`);
  });
  if (!stat) return;
  if (!stat.isSocket()) {
    throw new F2bzError("BIND_FAILED", `${quote(socket)} exists and is not a socket; not removing it`);
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socket);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (live) throw new F2bzError("BIND_FAILED", `another process listens on ${quote(socket)}`);
  await fs.rm(socket, { force: true });
}

/** The group a socket created by this process gets, without any chown by path afterwards. */
function setEgid(gid: number, socket: string): void {
  try {
    process.setegid!(gid);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new F2bzError("BIND_FAILED", `cannot create ${quote(socket)} for group ${gid}: ${code}`, {
      cause: error,
    });
  }
}

/** At most `limit` holders at once; the others wait in arrival order. */
class Semaphore {
  private active = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    };
  }
}
