import path from "node:path";
import { z } from "zod";
import { parseDuration } from "./duration.js";
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

  const duration = (fallback: string) =>
    z
      .union([z.string(), z.number()])
      .default(fallback)
      .transform((value, ctx) => {
        const ms = parseDuration(value);
        if (ms === undefined) {
          ctx.addIssue({ code: "custom", message: "expected a duration such as 30s, 10m, 1h or 7d" });
          return z.NEVER;
        }
        return ms;
      });

  const endpoint = z
    .string()
    .regex(/^(tcp:\/\/(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\*|\d{1,5})|ipc:\/\/[^\s]+)$/, {
      message: "expected an endpoint such as tcp://192.0.2.1:5678 or ipc:///run/f2bz/feed",
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
      submit: endpoint.default("tcp://0.0.0.0:5678"),
      feed: endpoint.default("tcp://0.0.0.0:5680"),
      snapshot: endpoint.default("tcp://0.0.0.0:5681"),
      keys: file.prefault("keys"),
      perOriginRate: z.number().positive().default(20),
      perOriginBurst: z.number().int().positive().default(200),
      globalRate: z.number().positive().default(500),
      maxPending: z.number().int().min(0).default(100),
    })
    .strict();

  const monitor = z
    .object({
      log: file.prefault("/var/log/fail2ban.log"),
      source: z.enum(["file", "journald"]).default("file"),
      journalUnit: z.string().default("fail2ban.service"),
      ignoreJails: z.array(jail).default(["f2bz"]),
      banTime: duration("1h"),
      banTimes: z.record(jail, duration("1h")).default({}),
      ackTimeout: duration("3s"),
      outboxLimit: z.number().int().positive().default(100_000),
      pollInterval: duration("1s"),
      unbanHold: duration("5s"),
      publishers: z.array(z.object({ submit: endpoint, key: file }).strict()).min(1),
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
      timeout: duration("15s"),
      batchSize: z.number().int().min(1).max(1000).default(100),
    })
    .strict()
    .refine((a) => a.type !== "exec" || a.command !== undefined, {
      message: "action.type 'exec' needs action.command, an argv array",
      path: ["command"],
    });

  const subscriber = z
    .object({
      publishers: z.array(z.object({ feed: endpoint, snapshot: endpoint, key: file }).strict()).min(1),
      action: action.prefault({}),
      neverBan: z.array(z.string()).default([]),
      peers: z.array(z.string()).default([]),
      origins: file.optional(),
    })
    .strict();

  const banHelper = z
    .object({
      socket: file.prefault("/run/f2bz/ban.sock"),
      group: z.string().optional(),
      client: file.prefault("/usr/bin/fail2ban-client"),
      jails: z.array(jail).default([]),
      neverBan: z.array(z.string()).default([]),
      timeout: duration("15s"),
    })
    .strict();

  const events = z
    .object({
      window: duration("2m"),
      allowCidr: z.boolean().default(false),
      maxBanTime: duration("30d"),
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
    .strict();
}

export type Config = z.output<ReturnType<typeof configSchema>>;
export type PublisherConfig = NonNullable<Config["publisher"]>;
export type MonitorConfig = NonNullable<Config["monitor"]>;
export type SubscriberConfig = NonNullable<Config["subscriber"]>;
export type BanHelperConfig = NonNullable<Config["banHelper"]>;
export type EventsConfig = Config["events"];
export type MetricsConfig = NonNullable<Config["metrics"]>;
