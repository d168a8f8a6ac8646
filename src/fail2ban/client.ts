import { execFile } from "node:child_process";
import path from "node:path";
import { F2bzError, quote } from "../errors.js";
import { parseAddress } from "../policy/address.js";
import { isValidJail } from "../policy/jail.js";
import type { BanExecutor } from "./executor.js";
import { parsePythonStringList } from "./repr.js";

export interface Fail2banClientOptions {
  /** Absolute path of fail2ban-client (default /usr/bin/fail2ban-client). */
  client?: string;
  /** Arguments put before every command, e.g. ["-s", "/run/fail2ban/fail2ban.sock"]. */
  args?: readonly string[];
  /** Per call (default 15 s); the child is killed when it passes. */
  timeoutMs?: number;
  /** Bytes of stdout or stderr per call (default 1 MiB). */
  maxBuffer?: number;
  /** Addresses per `banip`/`unbanip` call (default 100); argv stays bounded. */
  batchSize?: number;
  /** Whether one call may carry several addresses; asked of `version()` when left out. */
  multiIp?: boolean;
}

export interface Fail2banVersion {
  text: string;
  major: number;
  minor: number;
  patch: number;
  /** `set <jail> banip ip…` takes several addresses from 0.10.5 on; older ones take one per call. */
  supportsMultiIp: boolean;
}

/**
 * A fixed environment: no inherited PYTHONPATH, LD_PRELOAD or locale can change what the client
 * (a Python program, run as root by the ban-helper) loads or prints.
 */
const ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" };
const LOG_PREFIX = /^\d{4}-\d\d-\d\d [\d:,]+ \S+\s*\[\d+\]: [A-Z]+\s+/;

/**
 * fail2ban-client, run with execFile and an argv array (never a shell). Every address and jail is
 * checked again here: `banip` takes any string (CIDRs, "--report-absent", garbage) without
 * complaint, so this is the last gate before fail2ban.
 */
export class Fail2banClient implements BanExecutor {
  private readonly client: string;
  private readonly args: readonly string[];
  private readonly timeoutMs: number;
  private readonly maxBuffer: number;
  private readonly batchSize: number;
  private multiIp: Promise<boolean> | undefined;

  constructor(options: Fail2banClientOptions = {}) {
    this.client = options.client ?? "/usr/bin/fail2ban-client";
    if (!path.isAbsolute(this.client)) {
      throw new F2bzError("CONFIG_INVALID", `fail2ban-client path ${quote(this.client)} is not absolute`);
    }
    this.args = [...(options.args ?? [])];
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.maxBuffer = options.maxBuffer ?? 1 << 20;
    this.batchSize = Math.max(1, options.batchSize ?? 100);
    if (options.multiIp !== undefined) this.multiIp = Promise.resolve(options.multiIp);
  }

  /** Runs one command and returns its stdout, trimmed; any failure is FAIL2BAN_FAILED. */
  run(args: readonly string[]): Promise<string> {
    const what = describe(args);
    return new Promise((resolve, reject) => {
      execFile(
        this.client,
        [...this.args, ...args],
        { timeout: this.timeoutMs, killSignal: "SIGKILL", maxBuffer: this.maxBuffer, env: ENV, cwd: "/" },
        (error, stdout, stderr) => {
          if (!error) return resolve(stdout.trim());
          reject(
            new F2bzError("FAIL2BAN_FAILED", this.failure(what, error, stdout, stderr), { cause: error }),
          );
        },
      );
    });
  }

  async version(): Promise<Fail2banVersion> {
    // `version` asks the server, which is what parses `banip` ("1.0.2"); without a server, `-V`
    // gives the client's own version, from the same package ("1.0.2", or "Fail2Ban v0.9.6").
    const out = await this.run(["version"]).catch(() => this.run(["-V"]));
    const m = /(\d+)\.(\d+)\.(\d+)/.exec(out.split("\n")[0] ?? "");
    if (!m) throw unexpected("version", out);
    const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const atLeast = major > 0 || minor > 10 || (minor === 10 && patch >= 5);
    return { text: m[0], major, minor, patch, supportsMultiIp: atLeast };
  }

  /** Jail names from `status` ("`- Jail list:\tsshd, web"). */
  async jails(): Promise<string[]> {
    const out = await this.run(["status"]);
    const m = /^\W*Jail list:\s*(.*)$/m.exec(out);
    if (!m) throw unexpected("status", out);
    return m[1]!
      .split(",")
      .map((j) => j.trim())
      .filter((j) => j !== "");
  }

  ban(jail: string, ips: readonly string[]): Promise<number> {
    return this.apply("banip", jail, ips);
  }

  unban(jail: string, ips: readonly string[]): Promise<number> {
    return this.apply("unbanip", jail, ips);
  }

  /** Every entry of `get <jail> banned`, as fail2ban holds it (not necessarily an address). */
  async banned(jail: string): Promise<string[]> {
    checkJail(jail);
    const out = await this.run(["get", jail, "banned"]);
    const list = parsePythonStringList(out);
    if (!list) throw unexpected(`get ${jail} banned`, out);
    return list;
  }

  /**
   * The jail's ignoreip entries, as fail2ban prints them: addresses, networks ("192.0.2.0/24") or
   * host names. `banip` bypasses ignoreip, so a caller that wants to respect it filters with these.
   * Output of 1.0.2: "No IP address/network is ignored", or
   * "These IP addresses/networks are ignored:\n|- 192.0.2.0/24\n`- 10.1.2.3".
   */
  async ignoreIp(jail: string): Promise<string[]> {
    checkJail(jail);
    const out = await this.run(["get", jail, "ignoreip"]);
    const [head, ...rest] = out.split("\n");
    if (/^No IP address/.test(head ?? "")) return [];
    if (!/^These IP addresses\/networks are ignored:$/.test(head ?? "")) {
      throw unexpected(`get ${jail} ignoreip`, out);
    }
    return rest.map((line) => {
      const m = /^[|`]- (\S+)$/.exec(line);
      if (!m) throw unexpected(`get ${jail} ignoreip`, out);
      return m[1]!;
    });
  }

  private async apply(verb: "banip" | "unbanip", jail: string, ips: readonly string[]): Promise<number> {
    checkJail(jail);
    const canonical = ips.map(checkAddress);
    if (canonical.length === 0) return 0;
    const size = (await this.supportsMultiIp()) ? this.batchSize : 1;
    let total = 0;
    for (let i = 0; i < canonical.length; i += size) {
      const batch = canonical.slice(i, i + size);
      const out = await this.run(["set", jail, verb, ...batch]);
      // A count of newly (un)banned addresses; clients older than 0.10.5 echo the address instead.
      if (/^\d+$/.test(out)) total += Number(out);
      else if (size === 1) total += 1;
      else throw unexpected(`set ${jail} ${verb}`, out);
    }
    return total;
  }

  private supportsMultiIp(): Promise<boolean> {
    if (!this.multiIp) {
      const asked = this.version().then((v) => v.supportsMultiIp);
      // A failed probe is asked again next time rather than remembered.
      asked.catch(() => {
        if (this.multiIp === asked) this.multiIp = undefined;
      });
      this.multiIp = asked;
    }
    return this.multiIp;
  }

  private failure(what: string, error: Error, stdout: string, stderr: string): string {
    const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
    if (typeof e.code === "string") {
      if (e.code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER") {
        return `fail2ban-client ${what} printed more than ${this.maxBuffer} bytes`;
      }
      return `cannot run ${quote(this.client)}: ${e.code}`;
    }
    if (e.killed) return `fail2ban-client ${what} did not finish within ${this.timeoutMs} ms (killed)`;
    if (e.signal) return `fail2ban-client ${what} was killed by ${e.signal}`;
    // The answer is on stdout; stderr repeats it as a log line ("… ERROR   NOK: …"), and holds the only
    // text when the server is down ("Failed to access socket path: …").
    const line =
      firstLine(stdout) ??
      stderr
        .split("\n")
        .map((l) => l.replace(LOG_PREFIX, "").trim())
        .filter((l) => l !== "")
        .at(-1);
    return `fail2ban-client ${what} exited with ${e.code ?? "?"}${line ? `: ${quote(line, 200)}` : ""}`;
  }
}

function checkJail(jail: string): void {
  if (!isValidJail(jail)) {
    throw new F2bzError(
      "MESSAGE_REJECTED",
      `jail ${quote(jail)} is invalid, expected letters, digits, '.', '_', '-'`,
    );
  }
}

/** The canonical form goes to fail2ban; anything that is not an address or a CIDR never does. */
function checkAddress(ip: string): string {
  const parsed = parseAddress(ip, { allowCidr: true });
  if (!parsed.ok) {
    throw new F2bzError("MESSAGE_REJECTED", `address ${quote(ip, 64)} is invalid (${parsed.reason})`);
  }
  return parsed.ip;
}

/** The command without its addresses, for messages: "set web-01 banip". */
function describe(args: readonly string[]): string {
  const shown = args[0] === "set" || args[0] === "get" ? args.slice(0, 3) : args.slice(0, 1);
  return shown.join(" ") + (args.length > shown.length ? " …" : "");
}

function firstLine(text: string): string | undefined {
  const line = text.trim().split("\n")[0]?.trim();
  return line ? line : undefined;
}

function unexpected(what: string, out: string): F2bzError {
  return new F2bzError(
    "FAIL2BAN_FAILED",
    `fail2ban-client ${what} printed unexpected output ${quote(out, 200)}`,
  );
}
