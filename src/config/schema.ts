import path from "node:path";
import { z } from "zod";
import { networkOf, parseNetwork } from "../policy/address.js";
import { crossCheck } from "./cross-checks.js";
import { parseDuration } from "./duration.js";
import { parseEndpoint } from "./endpoint.js";
import { templateProblem } from "./exec-template.js";
import { parseLoopbackListen } from "./loopback.js";

/**
 * The one configuration file: `node` plus a section per process. Each process reads `node` and its
 * own section; absent sections are undefined, present ones come out fully defaulted.
 */
export function configSchema(baseDir: string) {
  // Defaults of paths go in with `prefault` (before the transform), so that a relative default such
  // as `keys` resolves against the config file's directory like a written value does.
  const file = z
    .string()
    .min(1)
    .transform((p) => path.resolve(baseDir, p));

  // Every duration has bounds: a zero window or ban time silently turns a safety check off, and a
  // huge one overflows the clock arithmetic (Date.now() + 999999999w is no date).
  const duration = (fallback: string, min: string, max: string) => {
    const low = parseDuration(min)!;
    const high = parseDuration(max)!;
    return z
      .union([z.string(), z.number()])
      .default(fallback)
      .transform((value, ctx) => {
        const ms = parseDuration(value);
        if (ms === undefined) {
          ctx.addIssue({ code: "custom", message: "expected a duration such as 30s, 10m, 1h or 7d" });
          return z.NEVER;
        }
        if (ms < low || ms > high) {
          ctx.addIssue({ code: "custom", message: `expected a duration from ${min} to ${max}` });
          return z.NEVER;
        }
        return ms;
      });
  };

  /** A bounded count or rate: `1e308` events per second is a typo, not a setting. */
  const count = (min: number, max: number) => z.number().int().min(min).max(max);
  const rate = (max: number) => z.number().positive().max(max);

  const endpoint = (role: "bind" | "connect") =>
    z.string().superRefine((text, ctx) => {
      const parsed = parseEndpoint(text, role);
      if (!parsed.ok) ctx.addIssue({ code: "custom", message: `expected ${parsed.reason}` });
    });
  const bind = endpoint("bind");
  const connect = endpoint("connect");

  // Never-ban entries protect addresses: one that protects something else than written (host
  // bits set) or nothing (a typo) must stop the start, not be skipped.
  const neverBan = z.array(
    z.string().superRefine((text, ctx) => {
      const parsed = parseNetwork(text, { allowCidr: true, minPrefix: { 4: 0, 6: 0 } });
      if (parsed.ok) return;
      const network = parsed.reason === "host bits set" ? networkOf(text) : undefined;
      ctx.addIssue({
        code: "custom",
        message: `expected an address or a range without host bits${network ? ` such as ${network}` : ""}`,
      });
    }),
  );
  // Peers may be host names (resolved at start and refresh); anything else must be an address or a
  // range, whose host bits are dropped as fail2ban's ignoreip does.
  const peer = z.string().superRefine((text, ctx) => {
    if (networkOf(text) !== undefined) return;
    if (/^(?=.*[A-Za-z])[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(text)) return;
    ctx.addIssue({ code: "custom", message: "expected an address, a range or a host name" });
  });

  const jail = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/, {
    message: "expected a jail name of letters, digits, '.', '_' or '-' (at most 32)",
  });

  const node = z
    .object({
      name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, {
        message: "expected a name of letters, digits, '.', '_' or '-'",
      }),
      identity: file,
      stateDir: file.prefault("/var/lib/f2bz"),
    })
    .strict();

  const publisher = z
    .object({
      submit: bind.default("tcp://0.0.0.0:5678"),
      feed: bind.default("tcp://0.0.0.0:5680"),
      snapshot: bind.default("tcp://0.0.0.0:5681"),
      keys: file.prefault("keys"),
      // Sized for attack waves (issue 11): a 20,000-ban wave from one node passes whole. What holds a
      // flooding node is maxActivePerOrigin; a per-second rate only smooths a sustained flood.
      perOriginRate: rate(100_000).default(10_000),
      perOriginBurst: count(1, 1_000_000).default(100_000),
      globalRate: rate(1_000_000).default(50_000),
      maxPending: count(0, 100_000).default(100),
      maxActivePerOrigin: count(1, 10_000_000).default(100_000),
    })
    .strict();

  const monitor = z
    .object({
      log: file.prefault("/var/log/fail2ban.log"),
      source: z.enum(["file", "journald"]).default("file"),
      journalUnit: z.string().default("fail2ban.service"),
      trustSyslog: z.boolean().default(false),
      ignoreJails: z.array(jail).default(["f2bz"]),
      banTime: duration("1h", "1s", "365d"),
      banTimes: z.record(jail, duration("1h", "1s", "365d")).default({}),
      // fail2ban: each jail's bantime as fail2ban reports it, banTime(s) when it cannot be asked.
      banTimeFrom: z.enum(["fail2ban", "config"]).default("fail2ban"),
      banTimeRefresh: duration("5m", "1s", "1d"),
      client: file.prefault("/usr/bin/fail2ban-client"),
      ackTimeout: duration("3s", "100ms", "10m"),
      outboxLimit: count(1, 10_000_000).default(100_000),
      pollInterval: duration("1s", "10ms", "1m"),
      unbanHold: duration("5s", "0s", "10m"),
      publishers: z.array(z.object({ submit: connect, key: file }).strict()).min(1),
    })
    .strict();

  const action = z
    .object({
      type: z.enum(["fail2ban", "exec", "log"]).default("fail2ban"),
      jail: z.union([z.literal("same"), jail]).default("f2bz"),
      fallbackJail: jail.optional(),
      dryRun: z.boolean().default(false),
      client: file.prefault("/usr/bin/fail2ban-client"),
      helper: file.optional(),
      command: z.array(z.string()).min(1).optional(),
      timeout: duration("15s", "1s", "1h"),
      batchSize: count(1, 1000).default(100),
    })
    .strict()
    .refine((a) => a.type !== "exec" || a.command !== undefined, {
      message: "action.type 'exec' needs action.command, an argv array",
      path: ["command"],
    })
    .superRefine((a, ctx) => {
      const problem = a.command && templateProblem(a.command);
      if (problem) {
        ctx.addIssue({
          code: "custom",
          message: `expected ${problem.expected}`,
          path: ["command", problem.index],
        });
      }
    });

  const subscriber = z
    .object({
      publishers: z.array(z.object({ feed: connect, snapshot: connect, key: file }).strict()).min(1),
      action: action.prefault({}),
      neverBan: neverBan.default([]),
      peers: z.array(peer).default([]),
      origins: file.optional(),
    })
    .strict();

  const banHelper = z
    .object({
      socket: file.prefault("/run/f2bz/ban.sock"),
      group: z.string().optional(),
      client: file.prefault("/usr/bin/fail2ban-client"),
      jails: z.array(jail).min(1),
      neverBan: neverBan.default([]),
      stateDir: file.prefault("/var/lib/f2bz-ban-helper"),
      timeout: duration("15s", "1s", "1h"),
    })
    .strict();

  const events = z
    .object({
      // The replay window: events outside it are refused, ids inside it remembered (twice as long).
      window: duration("2m", "1s", "1d"),
      allowCidr: z.boolean().default(false),
      maxBanTime: duration("30d", "1s", "365d"),
    })
    .strict();

  // Threat: /metrics answers anyone who can connect, without authentication: loopback only.
  const listen = z.string().transform((text, ctx) => {
    const address = parseLoopbackListen(text);
    if (!address) {
      ctx.addIssue({
        code: "custom",
        message: "expected a loopback address and port such as 127.0.0.1:9464 or [::1]:9464",
      });
      return z.NEVER;
    }
    return address;
  });

  // `listen` serves the unprivileged daemons; a process's own key overrides it (one file can serve
  // several daemons of a host, each needs its own port). The root ban-helper listens only when
  // named: its shipped unit allows no IP at all.
  const metrics = z
    .object({
      listen: listen.optional(),
      publisher: listen.optional(),
      monitor: listen.optional(),
      subscriber: listen.optional(),
      banHelper: listen.optional(),
    })
    .strict();

  const logging = z
    .object({
      level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
      file: file.optional(),
    })
    .strict();

  return z
    .object({
      node,
      publisher: publisher.optional(),
      monitor: monitor.optional(),
      subscriber: subscriber.optional(),
      banHelper: banHelper.optional(),
      events: events.prefault({}),
      metrics: metrics.optional(),
      logging: logging.prefault({}),
    })
    .strict()
    .superRefine((config, ctx) => {
      for (const issue of crossCheck(config)) {
        ctx.addIssue({
          code: "custom",
          message: `expected ${issue.expected}`,
          path: issue.path,
          params: { value: issue.value, other: issue.other },
        });
      }
    });
}

export type Config = z.output<ReturnType<typeof configSchema>>;
export type PublisherConfig = NonNullable<Config["publisher"]>;
export type MonitorConfig = NonNullable<Config["monitor"]>;
export type SubscriberConfig = NonNullable<Config["subscriber"]>;
export type BanHelperConfig = NonNullable<Config["banHelper"]>;
export type EventsConfig = Config["events"];
export type MetricsConfig = NonNullable<Config["metrics"]>;
