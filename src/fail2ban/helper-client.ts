import net from "node:net";
import { F2bzError, quote } from "../errors.js";
import type { BanExecutor } from "./executor.js";
import {
  formatRequest,
  type HelperVerb,
  MAX_ADDRESSES,
  MAX_LINE_BYTES,
  parseReply,
} from "./helper-protocol.js";
import { checkHelperSocket } from "./helper-socket.js";

export interface BanHelperClientOptions {
  /** Per request, connect to answer (default 20 s: the helper itself allows fail2ban-client 15 s). */
  timeoutMs?: number;
}

/** The helper answers one short line; anything longer is not a helper. */
const MAX_REPLY_BYTES = 512;
/** One word of the request: printable ASCII without blanks, so it cannot split into two words. */
const WORD = /^[!-~]+$/;

/**
 * Bans through the root ban-helper's unix socket, for a subscriber that runs unprivileged: one
 * connection and one line per batch. The helper re-validates everything; the check here only keeps
 * a caller's mistake from turning one word into two. Before each connection the socket must be
 * root's, in a directory only root may change (helper-socket.ts): a local user's socket at that
 * path would otherwise learn every ban and answer `OK` to bans that never happen.
 */
export class BanHelperClient implements BanExecutor {
  private readonly timeoutMs: number;

  constructor(
    readonly socketPath: string,
    options: BanHelperClientOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 20_000;
  }

  ban(jail: string, ips: readonly string[]): Promise<number> {
    return this.apply("BAN", jail, ips);
  }

  unban(jail: string, ips: readonly string[]): Promise<number> {
    return this.apply("UNBAN", jail, ips);
  }

  private async apply(verb: HelperVerb, jail: string, ips: readonly string[]): Promise<number> {
    for (const word of [jail, ...ips]) {
      if (!WORD.test(word)) {
        throw new F2bzError("MESSAGE_REJECTED", `${quote(word, 64)} cannot be sent to the ban-helper`);
      }
    }
    let total = 0;
    for (let i = 0; i < ips.length; ) {
      // At most MAX_ADDRESSES per line, and fewer if long addresses would pass the line limit.
      let n = Math.min(MAX_ADDRESSES, ips.length - i);
      while (n > 1 && Buffer.byteLength(formatRequest(verb, jail, ips.slice(i, i + n))) > MAX_LINE_BYTES) n--;
      const line = formatRequest(verb, jail, ips.slice(i, i + n));
      if (Buffer.byteLength(line) > MAX_LINE_BYTES) {
        throw new F2bzError(
          "MESSAGE_REJECTED",
          `request for jail ${quote(jail)} is too long for the ban-helper`,
        );
      }
      const reply = parseReply(await this.request(line));
      if (!reply.ok) {
        throw new F2bzError(
          "FAIL2BAN_FAILED",
          `ban-helper ${quote(this.socketPath)} refused ${verb} ${jail} (${n} addresses): ${reply.reason}`,
        );
      }
      total += reply.count;
      i += n;
    }
    return total;
  }

  /** Sends one line and returns the answer line without its newline. */
  private async request(line: string): Promise<string> {
    await checkHelperSocket(this.socketPath);
    return new Promise((resolve, reject) => {
      const socket = net.connect(this.socketPath);
      let received = "";
      let settled = false;
      const fail = (why: string, cause?: unknown) => {
        if (settled) return;
        settled = true;
        socket.destroy();
        reject(new F2bzError("FAIL2BAN_FAILED", `ban-helper ${quote(this.socketPath)}: ${why}`, { cause }));
      };
      const timer = setTimeout(() => fail(`no answer within ${this.timeoutMs} ms`), this.timeoutMs);
      socket.setEncoding("latin1");
      socket.once("connect", () => socket.write(line));
      socket.on("data", (chunk: string) => {
        received += chunk;
        const newline = received.indexOf("\n");
        if (newline !== -1) {
          settled = true;
          clearTimeout(timer);
          socket.destroy();
          resolve(received.slice(0, newline));
        } else if (received.length > MAX_REPLY_BYTES) {
          clearTimeout(timer);
          fail("answer too long");
        }
      });
      socket.once("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        fail(`cannot reach it: ${error.code ?? error.message}`, error);
      });
      socket.once("close", () => {
        clearTimeout(timer);
        fail("closed the connection without an answer");
      });
    });
  }
}
