/**
 * Every metric f2bz exposes, in one place: name (exposed as `f2bz_<name>`), type, help, the
 * processes that expose it and, per label, every value it may take. Prometheus conventions:
 * snake_case, counters end in `_total`, times in `_seconds`; a reason is a label, never part of a
 * name. Each daemon exposes every series of its metrics from the start, at 0, so that an alert on
 * `rate(...)` or `increase(...)` sees the first event. Add metrics and label values; never rename one.
 */
export type ProcessName = "publisher" | "monitor" | "subscriber" | "ban-helper";

export interface MetricSpec {
  type: "counter" | "gauge" | "histogram";
  help: string;
  processes: readonly ProcessName[];
  labels?: Readonly<Record<string, readonly string[]>>;
  /** Histograms only: upper bounds in seconds, ascending; `+Inf` is implied. */
  buckets?: readonly number[];
}

const BAN_KINDS = ["ban", "unban"] as const;
/**
 * protocol/reasons.ts's keys, written out: the root ban-helper loads this file and must not load
 * protocol code. A reason added there and not here fails to compile where it is counted.
 */
const REJECT_REASONS = [
  "frames",
  "size",
  "encoding",
  "schema",
  "version",
  "signature",
  "origin-mismatch",
  "stale",
  "future",
  "replay",
  "unauthorized",
  "never-ban",
  "rate-limited",
  "echo",
  "cidr",
  "jail",
  "ip",
  "busy",
  "origin-limit",
] as const;
/** From a millisecond on loopback to a minute of a monitor's retries across a lost publisher. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
/** A fail2ban-client call is a Python start: tens to hundreds of ms, seconds when fail2ban is busy. */
const CALL_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

export const CATALOGUE = {
  // Every process.
  build_info: {
    type: "gauge",
    help: "always 1; the f2bz version in the version label",
    processes: ["publisher", "monitor", "subscriber", "ban-helper"],
  },

  // Events dropped by the checklists of the publisher and the subscriber (protocol/reasons.ts).
  events_dropped_total: {
    type: "counter",
    help: "events dropped, by reason (the protocol's, then the subscriber's own)",
    processes: ["publisher", "subscriber"],
    labels: { reason: [...REJECT_REASONS, "duplicate", "expired", "superseded", "unban-not-held"] },
  },

  // Publisher: submissions from monitors.
  submissions_total: {
    type: "counter",
    help: "messages received on the submit endpoint",
    processes: ["publisher"],
  },
  submissions_accepted_total: {
    type: "counter",
    help: "submitted events that passed every check, by what the active set did with them",
    processes: ["publisher"],
    labels: { outcome: ["broadcast", "duplicate", "already-active", "no-change", "not-origin"] },
  },
  submissions_rate_limited_total: {
    type: "counter",
    help: "submitted events over a rate limit, by limit",
    processes: ["publisher"],
    labels: { limit: ["origin", "global"] },
  },
  submissions_failed_total: {
    type: "counter",
    help: "submissions the publisher could not handle (its state file, say): answered busy",
    processes: ["publisher"],
  },
  snapshot_requests_dropped_total: {
    type: "counter",
    help: "malformed snapshot requests dropped, by reason",
    processes: ["publisher"],
    labels: { reason: REJECT_REASONS },
  },
  snapshot_requests_busy_total: {
    type: "counter",
    help: "snapshot requests answered busy, by the limit that refused them",
    processes: ["publisher"],
    labels: { limit: ["in-flight", "peer-rate", "streams", "global-rate"] },
  },
  snapshots_total: {
    type: "counter",
    help: "snapshot streams, by how they ended",
    processes: ["publisher"],
    labels: { result: ["served", "failed", "abandoned"] },
  },
  bans_purged_total: {
    type: "counter",
    help: "holds dropped because their monitor's key was revoked with --purge-bans",
    processes: ["publisher"],
  },
  feed_subscriptions_total: {
    type: "counter",
    help: "feed subscriptions honoured, by action",
    processes: ["publisher"],
    labels: { action: ["subscribe", "unsubscribe"] },
  },
  feed_subscriptions_dropped_total: {
    type: "counter",
    help: "feed subscriptions dropped, by reason",
    processes: ["publisher"],
    labels: { reason: ["malformed", "topic"] },
  },
  task_failures_total: {
    type: "counter",
    help: "failures of a background task of the publisher (the feed stays consistent: a gap)",
    processes: ["publisher"],
    labels: { task: ["feed-send", "prune", "purge", "heartbeat", "prune-seen"] },
  },
  endpoint_rebinds_total: {
    type: "counter",
    help: "receive loops that failed on an open socket, whose endpoint was re-bound",
    processes: ["publisher"],
    labels: { endpoint: ["submit", "feed", "snapshot"] },
  },
  zap_requests_total: {
    type: "counter",
    help: "ZAP (CURVE handshake) requests",
    processes: ["publisher"],
  },
  zap_allowed_total: {
    type: "counter",
    help: "ZAP requests allowed",
    processes: ["publisher"],
  },
  zap_denied_total: {
    type: "counter",
    help: "ZAP requests denied, by reason",
    processes: ["publisher"],
    labels: { reason: ["envelope", "mechanism", "domain", "malformed", "revoked", "unknown", "error"] },
  },
  zap_reply_failures_total: {
    type: "counter",
    help: "ZAP replies that could not be sent",
    processes: ["publisher"],
  },
  key_reloads_total: {
    type: "counter",
    help: "reloads of the authorized and revoked key directories, by result",
    processes: ["publisher"],
    labels: { result: ["ok", "failed"] },
  },
  keys_skipped_total: {
    type: "counter",
    help: "key files skipped by a reload (unreadable, malformed, a secret key), each reload",
    processes: ["publisher", "subscriber"],
  },
  pending_keys_total: {
    type: "counter",
    help: "unknown keys seen at a handshake, by what became of their record under keys/pending",
    processes: ["publisher"],
    labels: { result: ["written", "write-failed", "dropped", "evicted", "unreadable"] },
  },
  bans_active: {
    type: "gauge",
    help: "bans held by the publisher (active set), or applied by the subscriber",
    processes: ["publisher", "subscriber"],
  },
  publisher_sequence: {
    type: "gauge",
    help: "the publisher's last feed sequence number",
    processes: ["publisher"],
  },
  peers_connected: {
    type: "gauge",
    help: "connections open on an endpoint (monitors on submit, subscribers on feed and snapshot), from accept to disconnect: one still in its handshake counts",
    processes: ["publisher"],
    labels: { endpoint: ["submit", "feed", "snapshot"] },
  },

  // Monitor and subscriber.
  publishers_connected: {
    type: "gauge",
    help: "configured publishers with a completed handshake now (monitor: on submit; subscriber: on the feed)",
    processes: ["monitor", "subscriber"],
  },

  // Shared by publisher and subscriber: expiries.
  bans_expired_total: {
    type: "counter",
    help: "bans lifted because they expired",
    processes: ["publisher", "subscriber"],
  },

  // Monitor.
  log_lines_suppressed_total: {
    type: "counter",
    help: "lines of fail2ban's log that are no ban to publish, by reason (fail2ban's own, or the interpreter's)",
    processes: ["monitor"],
    labels: {
      reason: [
        "restore-ban",
        "reban",
        "increase-ban",
        "already-banned",
        "repeal-ban",
        "found",
        "attempt",
        "ignore",
        "flush",
        "other",
        "ignored-jail",
        "stop-flush",
        "hold-overflow",
        "held-dropped",
      ],
    },
  },
  log_lines_dropped_total: {
    type: "counter",
    help: "Ban/Unban lines that no event can carry, by reason",
    processes: ["monitor"],
    labels: { reason: ["invalid-jail", "invalid-ip", "unsignable", "syslog-refused"] },
  },
  log_source_events_total: {
    type: "counter",
    help: "events of the log source (file tailer or journal), by kind",
    processes: ["monitor"],
    labels: {
      event: ["rotation", "truncation", "error", "overlong-line", "journal-malformed", "journal-restart"],
    },
  },
  events_published_total: {
    type: "counter",
    help: "events signed and committed to the outbox for the publishers",
    processes: ["monitor"],
  },
  events_echo_total: {
    type: "counter",
    help: "Ban lines that the subscriber of this node applied (ledger): not published again",
    processes: ["monitor"],
  },
  outbox_commit_failures_total: {
    type: "counter",
    help: "outbox commits that failed (the lines are read again)",
    processes: ["monitor"],
  },
  outbox_full_total: {
    type: "counter",
    help: "times the outbox was full and the tailer waited",
    processes: ["monitor"],
  },
  outbox_events: {
    type: "gauge",
    help: "signed events not yet acknowledged by every publisher",
    processes: ["monitor"],
  },
  deliveries_total: {
    type: "counter",
    help: "submit attempts to a publisher, by result",
    processes: ["monitor"],
    labels: { result: ["acked", "nacked", "timeout", "bad-reply", "error", "refused", "resigned"] },
  },
  deliveries_nacked_total: {
    type: "counter",
    help: "events a publisher refused, by its reason",
    processes: ["monitor"],
    labels: { reason: REJECT_REASONS },
  },
  publish_latency_seconds: {
    type: "histogram",
    help: "from signing a log line's event to a publisher's acknowledgement, per publisher that acknowledged it",
    processes: ["monitor"],
    buckets: LATENCY_BUCKETS,
  },

  // Subscriber.
  events_accepted_total: {
    type: "counter",
    help: "events that passed the subscriber's checklist, by source",
    processes: ["subscriber"],
    labels: { source: ["live", "snapshot"] },
  },
  bans_applied_total: {
    type: "counter",
    help: "addresses banned or unbanned by the action, by kind",
    processes: ["subscriber"],
    labels: { kind: BAN_KINDS },
  },
  action_failures_total: {
    type: "counter",
    help: "addresses the action failed to ban or unban, by kind",
    processes: ["subscriber"],
    labels: { kind: BAN_KINDS },
  },
  action_dropped_total: {
    type: "counter",
    help: "addresses dropped because the action's queue was full, by kind",
    processes: ["subscriber"],
    labels: { kind: BAN_KINDS },
  },
  ban_holders_total: {
    type: "counter",
    help: "changes of the holders of a ban, by change",
    processes: ["subscriber"],
    labels: { change: ["added", "released", "expiry-released"] },
  },
  feed_gaps_total: {
    type: "counter",
    help: "gaps in a publisher's sequence numbers (each repaired by a snapshot)",
    processes: ["subscriber"],
  },
  snapshot_loads_total: {
    type: "counter",
    help: "snapshots fetched from a publisher, by result",
    processes: ["subscriber"],
    labels: { result: ["loaded", "busy", "failed"] },
  },
  receive_failures_total: {
    type: "counter",
    help: "failures handling a received message, by stage",
    processes: ["subscriber"],
    labels: { stage: ["receiver", "event"] },
  },
  heartbeat_age_seconds: {
    type: "gauge",
    help: "seconds since the publisher heard from least recently sent anything (heartbeat or update)",
    processes: ["subscriber"],
  },
  apply_latency_seconds: {
    type: "histogram",
    help: "from an event's time at its origin to its ban or unban applied here",
    processes: ["subscriber"],
    buckets: LATENCY_BUCKETS,
  },

  // fail2ban calls (subscriber's fail2ban action, ban-helper).
  fail2ban_call_duration_seconds: {
    type: "histogram",
    help: "time of one fail2ban-client call",
    processes: ["subscriber", "ban-helper"],
    buckets: CALL_BUCKETS,
  },

  // Ban-helper.
  helper_requests_total: {
    type: "counter",
    help: "requests carried out, by verb and result",
    processes: ["ban-helper"],
    labels: { verb: ["ban", "unban"], result: ["ok", "failed"] },
  },
  helper_requests_refused_total: {
    type: "counter",
    help: "requests refused (not-held: addresses of UNBAN requests), by reason",
    processes: ["ban-helper"],
    labels: {
      reason: [
        "busy",
        "timeout",
        "line-too-long",
        "not-one-request",
        "empty",
        "missing-newline",
        "not-printable",
        "malformed",
        "unknown-verb",
        "missing-jail",
        "invalid-jail",
        "jail-not-allowed",
        "missing-address",
        "too-many-addresses",
        "invalid-address",
        "never-ban",
        "ignoreip",
        "ignoreip-unreadable",
        "not-held",
      ],
    },
  },
} as const satisfies Record<string, MetricSpec>;

type Catalogue = typeof CATALOGUE;
export type MetricName = keyof Catalogue;
type NamesOf<T extends MetricSpec["type"]> = {
  [N in MetricName]: Catalogue[N]["type"] extends T ? N : never;
}[MetricName];
export type CounterName = NamesOf<"counter">;
export type GaugeName = Exclude<NamesOf<"gauge">, "build_info">;
export type HistogramName = NamesOf<"histogram">;

/** The labels of a metric, each one of its declared values; `undefined` when it has none. */
export type LabelsOf<N extends MetricName> = Catalogue[N] extends {
  labels: infer L extends Readonly<Record<string, readonly string[]>>;
}
  ? { readonly [K in keyof L]: L[K][number] }
  : undefined;
