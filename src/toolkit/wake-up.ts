/** Calls `fn` after `ms`; returns the cancel function. Injected by tests that must not wait. */
export type Schedule = (fn: () => void, ms: number) => () => void;

export const realSchedule: Schedule = (fn, ms) => {
  const timer = setTimeout(fn, ms);
  return () => clearTimeout(timer);
};

/**
 * Resolves true once `ms` have passed, false as soon as `signal` aborts (at once if it already
 * has). Never rejects, and leaves no timer behind: a stopping daemon does not wait out a back-off.
 */
export function sleep(ms: number, signal?: AbortSignal, schedule: Schedule = realSchedule): Promise<boolean> {
  return new WakeUp(schedule).wait(ms, signal).then(() => !signal?.aborted);
}

/**
 * A wake-up call between a producer and the loop that waits for its work. `wake()` before `wait()`
 * is kept (the next wait returns at once), so a notification between a loop's check and its wait
 * is never lost; many wakes before one wait count once.
 */
export class WakeUp {
  private pending = false;
  private readonly waiters = new Set<(woken: boolean) => void>();

  constructor(private readonly schedule: Schedule = realSchedule) {}

  wake(): void {
    if (this.waiters.size === 0) {
      this.pending = true;
      return;
    }
    for (const resolve of [...this.waiters]) resolve(true);
  }

  /**
   * Resolves true when woken (or already woken since the last wait), false after `ms` (no limit
   * when undefined) or when `signal` aborts. Never rejects.
   */
  wait(ms?: number, signal?: AbortSignal): Promise<boolean> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve(true);
    }
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (woken: boolean) => {
        this.waiters.delete(finish);
        cancel?.();
        signal?.removeEventListener("abort", abort);
        resolve(woken);
      };
      const abort = () => finish(false);
      this.waiters.add(finish);
      signal?.addEventListener("abort", abort, { once: true });
      const cancel = ms === undefined ? undefined : this.schedule(() => finish(false), ms);
    });
  }
}
