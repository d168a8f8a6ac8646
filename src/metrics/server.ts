import { once } from "node:events";
import http from "node:http";
import { formatListen, type ListenAddress } from "../config/loopback.js";
import { F2bzError, quote } from "../errors.js";
import type { Logger } from "../logging.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import { CATALOGUE } from "./catalogue.js";
import { CONTENT_TYPE, render, renderFamilies, type Sample } from "./exposition.js";
import type { Metrics } from "./registry.js";

/**
 * What a daemon exposes: its metrics, the catalogue's. Their gauges are refreshed synchronously
 * per scrape (`onCollect`): a count or a field, never I/O that can block.
 */
export interface MetricsSource {
  metrics?: Metrics;
}

export interface MetricsServerOptions {
  /** Checked by the config schema to be loopback; port 0 (tests only) picks a free one. */
  address: ListenAddress;
  /** The `process` label: publisher, monitor, subscriber or ban-helper. */
  process: string;
  /** The f2bz version, the label of `f2bz_build_info`. */
  version: string;
  source: MetricsSource;
  logger: Logger;
}

/**
 * GET /metrics for Prometheus on a loopback port (DESIGN §9). Threat: anything on the host can
 * connect, unauthenticated: the server answers one fixed page or 404/405, never reads a request
 * body, bounds headers, time and connections, and closes every connection after one response.
 */
export class MetricsServer {
  private readonly server: http.Server;
  private readonly log: Logger;
  private readonly failures: LimitedLog;
  private readonly startTime = (Date.now() - process.uptime() * 1000) / 1000;
  private closing: Promise<void> | undefined;

  private constructor(private readonly options: MetricsServerOptions) {
    this.log = options.logger.child({ component: "metrics" });
    this.failures = new LimitedLog(this.log, new RateLimitedLog(60_000, 1));
    this.server = http.createServer(
      {
        headersTimeout: 5_000,
        requestTimeout: 5_000,
        keepAliveTimeout: 1_000,
        maxHeaderSize: 8_192,
        connectionsCheckingInterval: 1_000,
      },
      (request, response) => this.answer(request, response),
    );
    this.server.maxConnections = 16;
    this.server.maxRequestsPerSocket = 1;
    // A client that connects and sends nothing is cut off as well as one that sends slowly.
    this.server.setTimeout(10_000, (socket) => socket.destroy());
  }

  static async listen(options: MetricsServerOptions): Promise<MetricsServer> {
    const metrics = new MetricsServer(options);
    const { host, port } = options.address;
    try {
      metrics.server.listen({ host, port, exclusive: true });
      await once(metrics.server, "listening");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new F2bzError(
        "BIND_FAILED",
        `cannot serve metrics on ${quote(formatListen(options.address))}: ${code}, expected a free loopback port (each f2bz daemon of a host needs its own: metrics.${options.process === "ban-helper" ? "banHelper" : options.process})`,
        { cause: error },
      );
    }
    metrics.log.info({ listen: formatListen(metrics.address) }, "serving metrics at /metrics");
    return metrics;
  }

  /** The address listened on, the port resolved. */
  get address(): ListenAddress {
    const bound = this.server.address();
    const port = bound !== null && typeof bound === "object" ? bound.port : this.options.address.port;
    return { host: this.options.address.host, port };
  }

  /** Stops listening and drops every open connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  private answer(request: http.IncomingMessage, response: http.ServerResponse): void {
    // Untrusted: method and target. Never echoed, only compared.
    const target = (request.url ?? "").split("?")[0];
    response.setHeader("connection", "close");
    if (target !== "/metrics") return void send(response, 404, "not found\n");
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.setHeader("allow", "GET, HEAD");
      return void send(response, 405, "method not allowed\n");
    }
    send(response, 200, this.page(), request.method === "HEAD");
  }

  private page(): string {
    // A gauge that cannot be read (a state file busy, say) must not cost the counters.
    const failed = (error: unknown) => {
      this.failures.warn("gauges", { err: (error as Error).message }, "reading gauges failed");
    };
    const common = { process: this.options.process };
    const buildInfo = {
      name: "build_info" as const,
      spec: CATALOGUE.build_info,
      series: [{ labels: { version: this.options.version }, value: 1 }],
    };
    const families = [buildInfo, ...(this.options.source.metrics?.collect(failed) ?? [])];
    return renderFamilies(families, common) + render(processSamples(this.startTime), common);
  }
}

/** The standard process metrics that Prometheus client libraries export under these names. */
function processSamples(startTime: number): Sample[] {
  const cpu = process.cpuUsage();
  return [
    {
      name: "process_cpu_seconds_total",
      type: "counter",
      help: "user and system CPU time spent, in seconds",
      value: (cpu.user + cpu.system) / 1e6,
    },
    {
      name: "process_resident_memory_bytes",
      type: "gauge",
      help: "resident memory size, in bytes",
      value: process.memoryUsage.rss(),
    },
    {
      name: "process_start_time_seconds",
      type: "gauge",
      help: "start time of the process since the unix epoch, in seconds",
      value: Math.floor(startTime),
    },
  ];
}

function send(response: http.ServerResponse, status: number, body: string, headOnly = false): void {
  response.statusCode = status;
  response.setHeader("content-type", status === 200 ? CONTENT_TYPE : "text/plain; charset=utf-8");
  response.setHeader("content-length", Buffer.byteLength(body));
  response.end(headOnly ? undefined : body);
}
