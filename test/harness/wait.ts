import { setTimeout as delay } from "node:timers/promises";

export interface WaitOptions {
  timeoutMs: number;
  /** How often to look again; the condition is re-checked, never assumed. */
  intervalMs?: number;
  /** Named in the timeout error: "timed out after 5000 ms waiting for <what>". */
  what: string;
}

/**
 * Polls `check` until it returns something other than undefined, or throws once the deadline has
 * passed. This is waiting for an observable condition with a deadline, not a sleep standing in for
 * synchronisation: the loop ends as soon as the condition holds.
 */
export async function waitFor<T>(check: () => Promise<T | undefined> | T | undefined, options: WaitOptions) {
  const deadline = Date.now() + options.timeoutMs;
  const interval = options.intervalMs ?? 50;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}${detail}`);
    }
    await delay(Math.min(interval, Math.max(1, deadline - Date.now())));
  }
}
