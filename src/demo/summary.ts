/** What the demo sent, and what each node reported applying; pure, so it is tested on its own. */
export interface SentEvent {
  /** `${kind} ${ip}`: unique per run, since each ip is banned once and unbanned once. */
  key: string;
  kind: "ban" | "unban";
  ip: string;
  origin: string;
  writtenAt: number;
}

export interface AppliedReport {
  node: string;
  kind: "ban" | "unban";
  ip: string;
  at: number;
}

export interface Summary {
  sent: number;
  expectedApplications: number;
  applied: Record<string, number>;
  lost: number;
  duplicated: number;
  echoed: number;
  unexpected: number;
  latencyMs: { p50: number | null; p90: number | null; p99: number | null; max: number | null };
  ok: boolean;
}

export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

/**
 * Every event must reach every node except its origin exactly once. An application at the origin is
 * an echo; a second application is a duplicate; a missing one is lost.
 */
export function summarize(
  nodes: readonly string[],
  sent: readonly SentEvent[],
  reports: readonly AppliedReport[],
): Summary {
  const byKey = new Map(sent.map((e) => [e.key, e]));
  const counts = new Map<string, number>();
  const applied: Record<string, number> = Object.fromEntries(nodes.map((n) => [n, 0]));
  const latencies: number[] = [];
  let echoed = 0;
  let unexpected = 0;
  for (const r of reports) {
    const event = byKey.get(`${r.kind} ${r.ip}`);
    if (!event) {
      unexpected++;
      continue;
    }
    if (r.node === event.origin) {
      echoed++;
      continue;
    }
    const k = `${event.key}@${r.node}`;
    const n = (counts.get(k) ?? 0) + 1;
    counts.set(k, n);
    if (n === 1) {
      applied[r.node] = (applied[r.node] ?? 0) + 1;
      latencies.push(Math.max(0, r.at - event.writtenAt));
    }
  }
  let lost = 0;
  let duplicated = 0;
  for (const event of sent) {
    for (const node of nodes) {
      if (node === event.origin) continue;
      const n = counts.get(`${event.key}@${node}`) ?? 0;
      if (n === 0) lost++;
      if (n > 1) duplicated += n - 1;
    }
  }
  latencies.sort((a, b) => a - b);
  const expectedApplications = sent.length * (nodes.length - 1);
  return {
    sent: sent.length,
    expectedApplications,
    applied,
    lost,
    duplicated,
    echoed,
    unexpected,
    latencyMs: {
      p50: percentile(latencies, 50),
      p90: percentile(latencies, 90),
      p99: percentile(latencies, 99),
      max: latencies.at(-1) ?? null,
    },
    ok: lost === 0 && duplicated === 0 && echoed === 0 && unexpected === 0,
  };
}
