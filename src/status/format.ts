import { quote } from "../errors.js";
import { type DaemonName, STATE_FILES } from "../state/files.js";
import {
  DAEMONS,
  type DaemonStatus,
  type LogPosition,
  type MonitorState,
  type PublisherState,
  type StatusReport,
  type SubscriberState,
} from "./read.js";

/** How many origins the text lists; `--json` has them all. */
const MAX_ORIGINS_SHOWN = 20;

/** The report as an operator reads it: a block per daemon, a line per fact. */
export function formatStatus(report: StatusReport): string[] {
  const lines = [`node ${report.node}, state directory ${report.stateDir}`];
  const width = Math.max(...DAEMONS.map((d) => d.length));
  for (const daemon of DAEMONS) {
    const status = report[daemon] as DaemonStatus<unknown>;
    const head = daemon.padEnd(width);
    if (status.state === "absent") {
      const why = status.configured ? "not run on this node yet" : "no section for it in this config";
      lines.push(`${head}  no state: ${STATE_FILES[daemon]} not found (${why})`);
    } else if (status.state === "unreadable") {
      lines.push(`${head}  ${STATE_FILES[daemon]} is unreadable: ${status.error}`);
    } else {
      lines.push(`${head}  ${STATE_FILES[daemon]}`);
      lines.push(...details(daemon, report).map((l) => `  ${l}`));
    }
  }
  return lines;
}

function details(daemon: DaemonName, report: StatusReport): string[] {
  const now = report.now;
  if (daemon === "publisher") return publisherLines(report.publisher as PublisherState, now);
  if (daemon === "monitor") return monitorLines(report.monitor as MonitorState, now);
  return subscriberLines(report.subscriber as SubscriberState, now);
}

function publisherLines(s: PublisherState, now: number): string[] {
  const lines = [
    row(
      "active bans",
      `${s.activeBans}${s.nextExpiry === null ? "" : `, next expiry ${when(s.nextExpiry, now)}`}`,
    ),
    row("sequence", String(s.publisherSeq)),
    row("seen ids", String(s.seenIds)),
    row("origins", String(s.origins.length)),
  ];
  for (const o of s.origins.slice(0, MAX_ORIGINS_SHOWN)) {
    lines.push(`  ${o.origin}  ${o.name === null ? "" : `${o.name}  `}high-water mark ${o.highWaterMark}`);
  }
  if (s.origins.length > MAX_ORIGINS_SHOWN)
    lines.push(`  … and ${s.origins.length - MAX_ORIGINS_SHOWN} more`);
  return lines;
}

function monitorLines(s: MonitorState, now: number): string[] {
  const lines = [
    row(
      "outbox",
      `${count(s.outbox, "event")}${s.oldestQueued === null ? "" : `, oldest queued ${when(s.oldestQueued, now)}`}`,
    ),
  ];
  if (s.pending.length === 0) lines.push(row("pending", "no publishers"));
  for (const [i, p] of s.pending.entries()) {
    lines.push(row(i === 0 ? "pending" : "", `${p.events}  ${p.publisher}`));
  }
  if (s.positions.length === 0) lines.push(row("log position", "none yet"));
  for (const [i, p] of s.positions.entries()) lines.push(row(i === 0 ? "log position" : "", position(p)));
  lines.push(row("sequence", String(s.sequence)));
  return lines;
}

function subscriberLines(s: SubscriberState, now: number): string[] {
  const lines = [
    row(
      "applied bans",
      `${s.appliedBans}${s.nextExpiry === null ? "" : `, next expiry ${when(s.nextExpiry, now)}`}`,
    ),
  ];
  if (s.publishers.length === 0) lines.push(row("last sequence", "no publishers"));
  for (const [i, p] of s.publishers.entries()) {
    lines.push(row(i === 0 ? "last sequence" : "", `${p.lastSeq ?? "none yet"}  ${p.feed}`));
  }
  lines.push(row("ledger", count(s.ledger, "entry", "entries")));
  lines.push(row("seen ids", String(s.seenIds)));
  return lines;
}

const row = (label: string, value: string) => `${label.padEnd(14)}${value}`;

const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function position(p: LogPosition): string {
  // A journal cursor is text from journald: quoted, like any value we did not write ourselves.
  return "cursor" in p
    ? `${p.source} cursor ${quote(p.cursor, 200)}`
    : `${p.source} inode ${p.inode} offset ${p.offset}`;
}

/** `2026-11-29 12:00:00Z (in 14m 3s)` or `(… ago)`. */
export function when(time: number, now: number): string {
  const iso = new Date(time)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "Z");
  const delta = time - now;
  if (Math.abs(delta) < 1000) return `${iso} (now)`;
  return delta > 0 ? `${iso} (in ${span(delta)})` : `${iso} (${span(-delta)} ago)`;
}

/** The largest two units: `45s`, `14m 3s`, `2h`, `3d 4h`. */
export function span(ms: number): string {
  const units: [string, number][] = [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ];
  const i = units.findIndex(([, size]) => ms >= size);
  if (i < 0) return "0s";
  const [unit, size] = units[i]!;
  const first = `${Math.floor(ms / size)}${unit}`;
  const next = units[i + 1];
  const second = next ? Math.floor((ms % size) / next[1]) : 0;
  return next && second > 0 ? `${first} ${second}${next[0]}` : first;
}
