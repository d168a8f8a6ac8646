/**
 * The project's own fail2ban lab for tests: a real Debian fail2ban-server, self-contained under one
 * short temp dir. It never reads or writes /etc/fail2ban, /run/fail2ban or /var/log, never touches a
 * firewall (the only action appends a line to actions.log) and never starts the system service.
 * Several labs run side by side ("host A", "host B"); the server runs as whoever starts it, root or not.
 *
 * Layout of `dir` (absolute paths are written into the config):
 *   etc/      fail2ban.conf, jail.conf, filter.d/f2bz-lab.conf, action.d/f2bz-lab-file.conf, and
 *             any extra files (`files` option), e.g. jail.d/f2bz.conf
 *   run/      f2b.sock, f2b.pid
 *   lib/      f2b.sqlite3       (bans survive restart as "Restore Ban")
 *   log/      fail2ban.log, actions.log, <jail>.log (the file each jail watches)
 *   bin/      fail2ban-client   (wrapper bound to this lab)
 */
import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parsePythonStringList } from "../../src/fail2ban/repr.js";
import { testWhen } from "../helpers/skip.js";
import { waitFor } from "./wait.js";

const MARKER = ".f2bz-fail2ban-lab";
const BIN_DIRS = ["/usr/bin", "/usr/local/bin", "/usr/sbin", "/bin"];
/** AF_UNIX sun_path holds 107 bytes; keep a margin as the lab script does. */
const MAX_SOCKET_PATH = 100;
const JAIL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,23}$/;
const IGNORE_ENTRY = /^[0-9A-Fa-f:.]+(\/\d{1,3})?$/;

/** The real binaries: never a lab wrapper found first in PATH. */
export function fail2banBinaries(): { client: string; server: string } | undefined {
  for (const dir of BIN_DIRS) {
    const client = path.join(dir, "fail2ban-client");
    const server = path.join(dir, "fail2ban-server");
    if (existsSync(client) && existsSync(server)) return { client, server };
  }
  return undefined;
}

type TestFn = typeof import("ava").default;

/**
 * The ava `test` to use for tests that need a real fail2ban: `test` itself when fail2ban-server is
 * installed, otherwise `test.skip`, with a line on stderr that says why. Absence is the only reason
 * to skip: with fail2ban installed, every failure of the lab fails the test.
 */
export function ensureFail2ban(test: TestFn): TestFn {
  return testWhen(
    test,
    fail2banBinaries() !== undefined,
    `fail2ban-server not found in ${BIN_DIRS.join(", ")}: the tests that need a real fail2ban ` +
      "(install it: apt-get install -y fail2ban)",
  );
}

export interface Fail2banLabOptions {
  /** Jail names (default sshd-test, web-01); each watches log/<jail>.log with the lab filter. */
  jails?: string[];
  /** Seconds (default 600; -1 = forever). */
  bantime?: number;
  findtime?: number;
  /** Failures that trigger a filter ban (default 2); `fail()` writes this many lines. */
  maxretry?: number;
  /** Written as every jail's ignoreip (default empty). */
  ignoreip?: string[];
  loglevel?: "INFO" | "NOTICE" | "DEBUG";
  backend?: "polling" | "pyinotify" | "auto";
  /** Deadline for start, stop and each jail to come up (default 30 s). */
  timeoutMs?: number;
  /** Short label in the temp dir name, e.g. "a" and "b" for two hosts. */
  label?: string;
  /**
   * More config files under etc/, by relative path ("jail.d/f2bz.conf": text), e.g. the snippets
   * f2bz ships; they are read after jail.conf, as on a real host.
   */
  files?: Record<string, string>;
  /** Jails defined by `files`: waited for at start like `jails`, with no section written for them. */
  extraJails?: string[];
}

export interface ClientResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Fail2banLabPaths {
  dir: string;
  etc: string;
  socket: string;
  pidfile: string;
  db: string;
  /** The server's own log: the "[jail] Ban ip" lines. */
  log: string;
  /** One line per action call: "start <jail>", "ban <jail> <ip>", "unban <jail> <ip>", "stop <jail>". */
  actionsLog: string;
  /** A fail2ban-client wrapper bound to this lab (-c/-s/-p built in). */
  client: string;
  /** The real fail2ban-client the wrapper runs. */
  realClient: string;
  jailLog(jail: string): string;
}

export interface Fail2banLab {
  readonly paths: Fail2banLabPaths;
  /** The jails of `jails` and `extraJails`. */
  readonly jails: readonly string[];
  /** Runs fail2ban-client bound to this lab (argv array, no shell). Never throws on an exit code. */
  client(args: readonly string[]): Promise<ClientResult>;
  /** Appends `count` (default maxretry) failure lines for ip to the jail's watched log. */
  fail(ip: string, jail?: string, count?: number): Promise<void>;
  waitBanned(jail: string, ip: string, timeoutMs?: number): Promise<void>;
  waitUnbanned(jail: string, ip: string, timeoutMs?: number): Promise<void>;
  /** Waits for a fail2ban.log line matching `re`, searching from byte offset `since`; returns it. */
  waitLog(re: RegExp, timeoutMs?: number, since?: number): Promise<string>;
  /** Current size of fail2ban.log, to pass as `since`. */
  logSize(): Promise<number>;
  /** Contents of actions.log. */
  actions(): Promise<string>;
  /** `get <jail> banned`, parsed. */
  banned(jail: string): Promise<string[]>;
  /** PID of this lab's server, verified against /proc, or undefined when it is not running. */
  pid(): Promise<number | undefined>;
  restart(): Promise<void>;
  /** Stops the server; a no-op when it is not running. TERM, then KILL, by verified pid only. */
  stop(): Promise<void>;
  /** stop(), then removes the lab dir. Idempotent. */
  cleanup(): Promise<void>;
}

export async function startFail2ban(options: Fail2banLabOptions = {}): Promise<Fail2banLab> {
  const bins = fail2banBinaries();
  if (!bins) throw new Error("fail2ban is not installed (apt-get install -y fail2ban)");
  const jails = options.jails ?? ["sshd-test", "web-01"];
  for (const j of [...jails, ...(options.extraJails ?? [])])
    if (!JAIL_NAME.test(j)) throw new Error(`lab jail name '${j}' is not allowed`);
  for (const e of options.ignoreip ?? [])
    if (!IGNORE_ENTRY.test(e)) throw new Error(`lab ignoreip entry '${e}' is not allowed`);
  for (const file of Object.keys(options.files ?? {}))
    if (!/^[a-z]+\.d\/[A-Za-z0-9_.-]+\.(conf|local)$/.test(file))
      throw new Error(`lab file '${file}' is not allowed`);
  const dir = await makeDir(options.label ?? "lab");
  const lab = new Lab(dir, bins.client, jails, options);
  try {
    await lab.writeConfig();
    await lab.start();
  } catch (error) {
    const tail = await lab.logTail();
    await lab.cleanup().catch(() => {});
    throw new Error(`${(error as Error).message}\nlast lines of fail2ban.log:\n${tail}`, { cause: error });
  }
  return lab;
}

/** A short dir: the socket path must fit in sun_path. /tmp is the fallback when TMPDIR is long. */
async function makeDir(label: string): Promise<string> {
  const safe = label.replace(/[^A-Za-z0-9]/g, "").slice(0, 8) || "lab";
  for (const base of [os.tmpdir(), "/tmp"]) {
    const dir = await fs.realpath(await fs.mkdtemp(path.join(base, `f2b-${safe}-`)));
    if (`${dir}/run/f2b.sock`.length <= MAX_SOCKET_PATH && !/[^A-Za-z0-9/_.-]/.test(dir)) return dir;
    await fs.rm(dir, { recursive: true, force: true });
  }
  throw new Error("no temp dir short enough for a unix socket path (set TMPDIR to a short path)");
}

class Lab implements Fail2banLab {
  readonly paths: Fail2banLabPaths;
  readonly jails: readonly string[];
  /** The jails this lab writes a section (and a watched log) for. */
  private readonly ownJails: readonly string[];
  private readonly timeoutMs: number;
  private readonly maxretry: number;
  private cleaned = false;

  constructor(
    dir: string,
    realClient: string,
    jails: readonly string[],
    private readonly options: Fail2banLabOptions,
  ) {
    this.ownJails = jails;
    this.jails = [...jails, ...(options.extraJails ?? [])];
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxretry = options.maxretry ?? 2;
    this.paths = {
      dir,
      etc: path.join(dir, "etc"),
      socket: path.join(dir, "run", "f2b.sock"),
      pidfile: path.join(dir, "run", "f2b.pid"),
      db: path.join(dir, "lib", "f2b.sqlite3"),
      log: path.join(dir, "log", "fail2ban.log"),
      actionsLog: path.join(dir, "log", "actions.log"),
      client: path.join(dir, "bin", "fail2ban-client"),
      realClient,
      jailLog: (jail) => path.join(dir, "log", `${jail}.log`),
    };
  }

  async writeConfig(): Promise<void> {
    const p = this.paths;
    const o = this.options;
    for (const sub of ["etc/filter.d", "etc/action.d", "etc/jail.d", "run", "lib", "log", "bin"]) {
      await fs.mkdir(path.join(p.dir, sub), { recursive: true });
    }
    // Traversable, so that an unprivileged reader (a tailer, a test user) can reach the log files.
    await fs.chmod(p.dir, 0o755);
    await fs.writeFile(path.join(p.dir, MARKER), "");
    await fs.writeFile(
      path.join(p.etc, "fail2ban.conf"),
      ini("fail2ban.conf of an f2bz test lab", {
        DEFAULT: {
          loglevel: o.loglevel ?? "INFO",
          logtarget: p.log,
          syslogsocket: "auto",
          socket: p.socket,
          pidfile: p.pidfile,
          dbfile: p.db,
          dbpurgeage: "1d",
          dbmaxmatches: "10",
        },
        Definition: { allowipv6: "auto" },
        Thread: {},
      }),
    );
    // fail2ban cuts the timestamp out before matching; what is left starts with a blank.
    await fs.writeFile(
      path.join(p.etc, "filter.d", "f2bz-lab.conf"),
      ini("matches: 2026-01-01T00:00:00Z Failed login from 192.0.2.1 (attempt 1)", {
        Definition: { failregex: String.raw`^\s*Failed login from <HOST>(?:\s.*)?$`, ignoreregex: "" },
      }),
    );
    // No firewall: one line per call. fail2ban shell-escapes tag values such as <ip>.
    const line = (words: string) => `printf '%%s\\n' "${words}" >> <target>`;
    await fs.writeFile(
      path.join(p.etc, "action.d", "f2bz-lab-file.conf"),
      ini("action of an f2bz test lab: appends to actions.log", {
        Definition: {
          actionstart: line("start <name>"),
          actionstop: line("stop <name>"),
          actioncheck: "",
          actionban: line("ban <name> <ip>"),
          actionunban: line("unban <name> <ip>"),
        },
        Init: { name: "default", target: p.actionsLog },
      }),
    );
    const jailSections: Record<string, Record<string, string>> = {
      DEFAULT: {
        enabled: "false",
        backend: o.backend ?? "polling",
        usedns: "no",
        ignoreself: "false",
        ignoreip: (o.ignoreip ?? []).join(" "),
        maxretry: String(this.maxretry),
        findtime: String(o.findtime ?? 600),
        bantime: String(o.bantime ?? 600),
        logencoding: "utf-8",
        filter: "f2bz-lab",
        action: "f2bz-lab-file[name=%(__name__)s]",
      },
    };
    for (const j of this.ownJails) jailSections[j] = { enabled: "true", logpath: p.jailLog(j) };
    await fs.writeFile(path.join(p.etc, "jail.conf"), ini("jail.conf of an f2bz test lab", jailSections));
    for (const [file, text] of Object.entries(o.files ?? {}))
      await fs.writeFile(path.join(p.etc, file), text);
    for (const file of [...this.ownJails.map(p.jailLog), p.actionsLog]) await fs.appendFile(file, "");
    // The server creates its log 0600 (umask 077); pre-create it 0640 as Debian's package does.
    if (!existsSync(p.log)) await fs.writeFile(p.log, "", { mode: 0o640 });
    await fs.writeFile(
      p.client,
      `#!/bin/sh\n# fail2ban-client bound to the f2bz test lab in ${p.dir}\n` +
        `exec ${p.realClient} -c ${p.etc} -s ${p.socket} -p ${p.pidfile} "$@"\n`,
      { mode: 0o755 },
    );
  }

  async start(): Promise<void> {
    if (await this.answers()) return;
    const stale = await this.pid();
    if (stale !== undefined) throw new Error(`lab server pid ${stale} is alive but does not answer ping`);
    // "start" forks fail2ban-server as a daemon that closes every inherited fd (so the pipes of
    // execFile close), sends it the config and returns; -x removes a stale socket of a killed server.
    const started = await run(this.paths.realClient, [...this.boundArgs(), "-x", "start"], this.timeoutMs);
    if (started.code !== 0) {
      throw new Error(
        `fail2ban-client start failed (exit ${started.code}): ${started.stdout}${started.stderr}`,
      );
    }
    const deadline = Date.now() + this.timeoutMs;
    await waitFor(async () => ((await this.answers()) ? true : undefined), {
      timeoutMs: this.timeoutMs,
      intervalMs: 100,
      what: `the lab server in ${this.paths.dir} to answer ping`,
    });
    for (const jail of this.jails) {
      await waitFor(async () => ((await this.client(["status", jail])).code === 0 ? true : undefined), {
        timeoutMs: Math.max(1, deadline - Date.now()),
        intervalMs: 100,
        what: `jail ${jail} to start`,
      });
    }
  }

  client(args: readonly string[]): Promise<ClientResult> {
    return run(this.paths.realClient, [...this.boundArgs(), ...args], this.timeoutMs);
  }

  async fail(ip: string, jail = this.ownJails[0]!, count = this.maxretry): Promise<void> {
    if (!this.ownJails.includes(jail)) throw new Error(`lab watches no log for jail '${jail}'`);
    const stamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    let text = "";
    for (let n = 1; n <= count; n++) text += `${stamp} Failed login from ${ip} (attempt ${n})\n`;
    await fs.appendFile(this.paths.jailLog(jail), text);
  }

  async waitBanned(jail: string, ip: string, timeoutMs = 15_000): Promise<void> {
    await this.waitState(jail, ip, "1", timeoutMs);
  }

  async waitUnbanned(jail: string, ip: string, timeoutMs = 15_000): Promise<void> {
    await this.waitState(jail, ip, "0", timeoutMs);
  }

  private async waitState(jail: string, ip: string, want: "0" | "1", timeoutMs: number) {
    await waitFor(
      async () => {
        const r = await this.client(["get", jail, "banned", ip]);
        return r.code === 0 && r.stdout.trim() === want ? true : undefined;
      },
      { timeoutMs, intervalMs: 100, what: `${ip} to be ${want === "1" ? "banned" : "unbanned"} in ${jail}` },
    );
  }

  async waitLog(re: RegExp, timeoutMs = 15_000, since = 0): Promise<string> {
    return waitFor(
      async () => {
        const text = (await fs.readFile(this.paths.log)).subarray(since).toString("utf8");
        return text.split("\n").find((l) => re.test(l));
      },
      { timeoutMs, what: `a line matching ${re} in ${this.paths.log}` },
    );
  }

  async logSize(): Promise<number> {
    return (await fs.stat(this.paths.log)).size;
  }

  actions(): Promise<string> {
    return fs.readFile(this.paths.actionsLog, "utf8");
  }

  async banned(jail: string): Promise<string[]> {
    const r = await this.client(["get", jail, "banned"]);
    const list = r.code === 0 ? parsePythonStringList(r.stdout) : undefined;
    if (!list) throw new Error(`get ${jail} banned: exit ${r.code}, output '${r.stdout.trim()}'`);
    return list;
  }

  async pid(): Promise<number | undefined> {
    let text: string;
    try {
      text = await fs.readFile(this.paths.pidfile, "utf8");
    } catch {
      return undefined;
    }
    const pid = Number.parseInt(text.trim(), 10);
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    return (await isLabServer(pid, this.paths.socket)) ? pid : undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.writeConfig();
    await this.start();
  }

  async stop(): Promise<void> {
    if (!existsSync(this.paths.dir)) return;
    const pid = await this.pid();
    if (await this.answers()) await this.client(["stop"]);
    if (pid !== undefined) {
      const gone = () => isLabServer(pid, this.paths.socket).then((alive) => (alive ? undefined : true));
      const settle = (ms: number, what: string) =>
        waitFor(gone, { timeoutMs: ms, intervalMs: 50, what }).then(
          () => true,
          () => false,
        );
      // Signals go only to the pid verified against /proc (cmdline names this lab's socket).
      if (!(await settle(this.timeoutMs, "the lab server to exit"))) {
        signal(pid, "SIGTERM");
        if (!(await settle(5_000, "the lab server to exit after TERM"))) {
          signal(pid, "SIGKILL");
          await settle(5_000, "the lab server to exit after KILL");
        }
      }
    } else {
      await waitFor(async () => ((await this.answers()) ? undefined : true), {
        timeoutMs: this.timeoutMs,
        intervalMs: 100,
        what: `the lab server in ${this.paths.dir} to stop answering`,
      });
    }
    await fs.rm(this.paths.socket, { force: true });
    await fs.rm(this.paths.pidfile, { force: true });
  }

  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    await this.stop();
    this.cleaned = true;
    if (existsSync(path.join(this.paths.dir, MARKER))) {
      await fs.rm(this.paths.dir, { recursive: true, force: true });
    }
  }

  async logTail(lines = 20): Promise<string> {
    const text = await fs.readFile(this.paths.log, "utf8").catch(() => "");
    return text
      .split("\n")
      .slice(-lines - 1)
      .join("\n");
  }

  private boundArgs(): string[] {
    return ["-c", this.paths.etc, "-s", this.paths.socket, "-p", this.paths.pidfile];
  }

  private async answers(): Promise<boolean> {
    if (!existsSync(this.paths.socket)) return false;
    return (await this.client(["ping"])).code === 0;
  }
}

function run(file: string, args: readonly string[], timeoutMs: number): Promise<ClientResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        cwd: "/",
        timeout: timeoutMs,
        maxBuffer: 4 << 20,
        // As the Debian service does: no user site-packages in the server it may start.
        env: { ...process.env, PYTHONNOUSERSITE: "1", LANG: "C" },
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout, stderr: error && code === -1 ? `${stderr}${error.message}` : stderr });
      },
    );
  });
}

/** Alive, not a zombie (an init that does not reap leaves <defunct> behind), and this lab's server. */
async function isLabServer(pid: number, socket: string): Promise<boolean> {
  try {
    const status = await fs.readFile(`/proc/${pid}/status`, "utf8");
    if (/^State:\s*Z/m.test(status)) return false;
    const cmdline = (await fs.readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    return cmdline.some((a) => a.endsWith("fail2ban-server")) && cmdline.includes(socket);
  } catch {
    return false;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function ini(comment: string, sections: Record<string, Record<string, string>>): string {
  let text = `# ${comment}; generated by test/harness/fail2ban.ts, rewritten at each start\n`;
  for (const [name, values] of Object.entries(sections)) {
    text += `\n[${name}]\n`;
    for (const [key, value] of Object.entries(values)) text += `${key} = ${value}\n`;
  }
  return text;
}
