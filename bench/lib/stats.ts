/** Small statistics for benchmark samples: every figure is a median of rounds or a percentile. */

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function range(values: readonly number[]): [number, number] {
  return [Math.min(...values), Math.max(...values)];
}

/**
 * Runs `op` in batches until `ms` have passed and returns operations per second. Each batch is
 * awaited only when `op` returns a promise, so a synchronous baseline pays no microtask per call.
 */
export async function opsPerSecond(op: () => unknown, ms: number, batch = 64): Promise<number> {
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(ms * 1e6));
  let ops = 0;
  let now = start;
  while (now < end) {
    for (let i = 0; i < batch; i++) {
      const result = op();
      if (result instanceof Promise) await result;
    }
    ops += batch;
    now = process.hrtime.bigint();
  }
  return ops / (Number(now - start) / 1e9);
}

/** Microseconds since `start` (a process.hrtime.bigint()). */
export function microsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1000;
}
