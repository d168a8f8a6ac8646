import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import { fileURLToPath } from "node:url";
import type { ExecutionContext } from "ava";
import { waitFor } from "../harness/wait.js";
import { CLI, ensureBuilt } from "../helpers/cli.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request to 127.0.0.1 (or `host`); rejects with the socket error (ECONNREFUSED …). */
export function request(
  port: number,
  options: { path?: string; method?: string; host?: string; body?: string } = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: options.host ?? "127.0.0.1",
        port,
        path: options.path ?? "/metrics",
        method: options.method ?? "GET",
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", reject);
    req.end(options.body);
  });
}

/** The port a daemon serves metrics on (configured as port 0), read back from its log line. */
export function metricsPort(stdout: string): number {
  const listen = /"listen":"127\.0\.0\.1:(\d+)","msg":"serving metrics at \/metrics"/.exec(stdout)?.[1];
  if (listen === undefined) throw new Error(`no "serving metrics" line with a port in: ${stdout}`);
  return Number(listen);
}

/** A loopback port this test listens on (bound at port 0) until teardown: one nobody else can take. */
export async function listening(t: ExecutionContext): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** The value of one sample line, e.g. `f2bz_bans_active{process="publisher"}`, or undefined. */
export function sample(page: string, series: string): number | undefined {
  const line = page.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

export interface Daemon {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
  /** Resolves once the "<name> started" log line is out; rejects with stderr if it exits first. */
  started(name: string): Promise<void>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** The built CLI as a long-running process; killed at teardown if still running. */
export function spawnDaemon(t: ExecutionContext, args: string[]): Daemon {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exit,
    async started(name) {
      await Promise.race([
        waitFor(() => (out.includes(`"msg":"${name} started"`) ? true : undefined), {
          timeoutMs: 20_000,
          what: `the ${name} to start`,
        }),
        exit.then((code) => {
          throw new Error(`the ${name} exited with ${code} before it started: ${err}`);
        }),
      ]);
    },
    stop() {
      child.kill("SIGTERM");
      return exit;
    },
  };
}
