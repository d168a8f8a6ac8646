import { promises as fs } from "node:fs";
import path from "node:path";
import type { ExecutionContext } from "ava";
import type * as zmq from "zeromq";
import { keys as keysCommand } from "../../src/commands/keys.js";
import { formatPublicCertificate, generateIdentity, type SecretIdentity } from "../../src/keys/identity.js";
import { ensureLayout, type Role, revokedDir, roleDir } from "../../src/keys/store.js";
import type { Logger } from "../../src/logging.js";
import { AccessControl, type AccessControlOptions, type ReloadResult } from "../../src/transport/access.js";
import { BoundEndpoint } from "../../src/transport/endpoint.js";
import {
  createServerSocket,
  createTransportContext,
  type ServerKind,
  type ServerSockets,
  type ZapDomain,
} from "../../src/transport/sockets.js";
import { ZapHandler, type ZapRegistry } from "../../src/transport/zap.js";
import { FAST_RECONNECT, testLogger } from "../helpers/cluster.js";
import { captureLogger, DEADLINE_MS } from "../helpers/logs.js";
import { tempDir } from "../helpers/temp-dir.js";

export { captureLogger, DEADLINE_MS, FAST_RECONNECT, tempDir, testLogger as silentLogger };

/** A waiter list: `waitFor` resolves with the first item matching, past or future, or rejects at the deadline. */
export class Recorder<T> {
  readonly items: T[] = [];
  private waiters: { match: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  record(item: T): void {
    this.items.push(item);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(item)) return true;
      w.resolve(item);
      return false;
    });
  }

  waitFor(match: (item: T) => boolean, what: string, ms = DEADLINE_MS): Promise<T> {
    const found = this.items.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        match,
        resolve: (item: T) => {
          clearTimeout(timer);
          resolve(item);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      this.waiters.push(waiter);
    });
  }
}

/** Every message a socket receives, read by its one `for await` loop until the socket closes. */
export class Inbox extends Recorder<Buffer[]> {
  /** With `answer`, each message is answered on the same socket (REP, or ROUTER with the envelope). */
  constructor(
    socket: zmq.Socket & AsyncIterable<Buffer[]>,
    answer?: (message: Buffer[]) => (Buffer | string)[],
  ) {
    super();
    void (async () => {
      for await (const message of socket) {
        this.record(message);
        if (answer) await (socket as unknown as zmq.Writable).send(answer(message));
      }
    })();
  }

  texts(): string[] {
    return this.items.map((m) =>
      m.map((f) => (f.length > 64 ? `<${f.length} bytes>` : f.toString())).join("|"),
    );
  }
}

/** Every monitor event of a socket; create it before bind/connect so that nothing is missed. */
export class EventLog extends Recorder<zmq.Event> {
  constructor(socket: zmq.Socket) {
    super();
    const events = socket.events;
    void (async () => {
      for await (const event of events) this.record(event);
    })();
  }

  types(): string[] {
    return this.items.map((e) => e.type);
  }

  authFailure(status: number, ms = DEADLINE_MS): Promise<zmq.Event> {
    return this.waitFor(
      (e) => e.type === "handshake:error:auth" && e.error.status === status,
      `handshake:error:auth ${status}`,
      ms,
    );
  }

  protocolError(code: string, ms = DEADLINE_MS): Promise<zmq.Event> {
    return this.waitFor(
      (e) => e.type === "handshake:error:protocol" && e.error.code === code,
      `handshake:error:protocol ${code}`,
      ms,
    );
  }

  handshake(ms = DEADLINE_MS): Promise<zmq.Event> {
    return this.waitFor((e) => e.type === "handshake", "handshake", ms);
  }
}

/** `promise`, or a rejection naming `what` once `ms` have passed. */
export async function within<T>(promise: Promise<T>, what: string, ms = DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when `callback` is first called with an argument matching `match`. */
export function callbackWaiter<A>(): {
  callback: (arg: A) => void;
  waitFor: (match: (arg: A) => boolean, what: string, ms?: number) => Promise<A>;
  calls: A[];
} {
  const recorder = new Recorder<A>();
  return {
    callback: (arg: A) => recorder.record(arg),
    waitFor: (match, what, ms) => recorder.waitFor(match, what, ms),
    calls: recorder.items,
  };
}

export async function keysDir(t: ExecutionContext): Promise<string> {
  const dir = path.join(await tempDir(t, "f2bz-transport-"), "keys");
  await ensureLayout(dir);
  return dir;
}

/** Writes NAME.key into authorized/<role>s atomically, as an operator's `mv` would. */
export async function authorize(
  dir: string,
  role: Role,
  id: SecretIdentity,
  name = id.name,
): Promise<string> {
  const file = path.join(roleDir(dir, role), `${name}.key`);
  await fs.writeFile(`${file}.tmp`, formatPublicCertificate(id));
  await fs.rename(`${file}.tmp`, file);
  return file;
}

export async function revoke(dir: string, role: Role, name: string): Promise<void> {
  await fs.rename(path.join(roleDir(dir, role), `${name}.key`), path.join(revokedDir(dir), `${name}.key`));
}

export const identity = (name: string): Promise<SecretIdentity> => generateIdentity(name);

/** A registry in memory: `keys[domain]` lists the node names allowed there. */
export function staticRegistry(
  entries: { domain: ZapDomain; id: SecretIdentity }[],
  revoked: SecretIdentity[] = [],
): ZapRegistry {
  const hex = (k: Uint8Array) => Buffer.from(k).toString("hex");
  return {
    lookup(domain, key) {
      const found = entries.find((e) => e.domain === domain && hex(e.id.curvePublic) === hex(key));
      return found && !revoked.some((r) => hex(r.curvePublic) === hex(key))
        ? { nodeId: found.id.nodeId, name: found.id.name }
        : undefined;
    },
    isRevoked: (key) => revoked.some((r) => hex(r.curvePublic) === hex(key)),
  };
}

export interface Server<S extends zmq.Socket> {
  context: zmq.Context;
  zap: ZapHandler;
  endpoint: BoundEndpoint<S>;
  /** Events of the first socket (the one bound at start). */
  events: EventLog;
  identity: SecretIdentity;
}

/**
 * A server as the publisher runs one: a context, the ZAP handler bound first, then a CURVE server
 * socket from the factory on 127.0.0.1 with a `*` port. Everything is closed at teardown.
 */
export async function startServer<K extends ServerKind>(
  t: ExecutionContext,
  kind: K,
  options: {
    domain: ZapDomain;
    registry: ZapRegistry;
    logger?: Logger;
    onUnknown?: (domain: ZapDomain, address: string, key: Uint8Array) => void;
    maxMessageSize?: number;
    address?: string;
    ipv6?: boolean;
  },
): Promise<Server<ServerSockets[K]>> {
  const context = createTransportContext();
  const identity = await generateIdentity("publisher");
  const zap = await ZapHandler.start({
    context,
    registry: options.registry,
    logger: options.logger ?? testLogger(),
    ...(options.onUnknown ? { onUnknown: options.onUnknown } : {}),
  });
  t.teardown(() => zap.close());
  let events: EventLog | undefined;
  const endpoint = await BoundEndpoint.open(() => {
    const socket = createServerSocket(kind, {
      context,
      identity,
      domain: options.domain,
      ...(options.maxMessageSize ? { maxMessageSize: options.maxMessageSize } : {}),
      ...(options.ipv6 ? { ipv6: true } : {}),
    });
    events ??= new EventLog(socket);
    return socket;
  }, options.address ?? "tcp://127.0.0.1:*");
  t.teardown(() => endpoint.close());
  return { context, zap, endpoint, events: events!, identity };
}

/** An AccessControl on `dir`, closed at teardown, that reports its reloads. */
export async function openAccess(
  t: ExecutionContext,
  dir: string,
  options: Partial<AccessControlOptions> = {},
): Promise<{ access: AccessControl; reloads: ReturnType<typeof callbackWaiter<ReloadResult>> }> {
  const reloads = callbackWaiter<ReloadResult>();
  const access = await AccessControl.open(dir, {
    logger: testLogger(),
    pollMs: 100,
    onReload: reloads.callback,
    ...options,
  });
  t.teardown(() => access.close());
  return { access, reloads };
}

/** Closes a socket at teardown. */
export function closing<S extends zmq.Socket>(t: ExecutionContext, socket: S): S {
  t.teardown(() => socket.close());
  return socket;
}

/** Runs `f2bz keys …` in-process against `dir`; returns its stdout lines. */
export async function keysCli(dir: string, ...positionals: string[]): Promise<string[]> {
  const out: string[] = [];
  await keysCommand.run({
    positionals,
    values: { keys: dir },
    stdout: (line) => out.push(line),
    stderr: () => {},
    signal: new AbortController().signal,
    onHangup: () => {},
    tty: false,
    env: {},
  });
  return out;
}
