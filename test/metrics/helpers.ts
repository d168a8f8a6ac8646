import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import type { ExecutionContext } from "ava";
import { type Daemon, spawnDaemon } from "../helpers/cli.js";
import { ANY_PORT, type TestCluster, type TestNode } from "../helpers/cluster.js";

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

/**
 * `node`'s publisher run from the built CLI, on loopback at port 0 for its endpoints and its
 * metrics, logging at info; resolves once it has started, with the metrics port it logged.
 */
export async function cliPublisher(
  t: ExecutionContext,
  cluster: TestCluster,
  node: TestNode,
): Promise<{ daemon: Daemon; port: number }> {
  const config = await cluster.configFile(node, {
    publisher: { submit: ANY_PORT, feed: ANY_PORT, snapshot: ANY_PORT, keys: cluster.keysDir },
    metrics: { listen: "127.0.0.1:0" },
    logging: { level: "info" },
  });
  const daemon = spawnDaemon(t, ["publisher", "--config", config]);
  await daemon.started("publisher");
  return { daemon, port: metricsPort(daemon.stdout()) };
}

/**
 * A config for the root ban-helper in `dir` (socket `dir`/ban.sock, jail f2bz, no fail2ban
 * behind it) with this `metrics` section, written as `dir`/f2bz.yaml; returns its path.
 */
export async function banHelperConfig(dir: string, metrics: string): Promise<string> {
  const config = path.join(dir, "f2bz.yaml");
  await writeFile(
    config,
    [
      "node: { name: helper, identity: keys/helper.key_secret }",
      `banHelper: { socket: ${path.join(dir, "ban.sock")}, client: ${path.join(dir, "no-fail2ban-client")}, jails: [f2bz], stateDir: ${path.join(dir, "state")} }`,
      `metrics: ${metrics}`,
      "",
    ].join("\n"),
  );
  return config;
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
