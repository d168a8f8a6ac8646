/**
 * What applies bans: `Fail2banClient` (runs fail2ban-client itself) or `BanHelperClient` (asks the
 * root ban-helper). Both resolve to the number of addresses fail2ban newly banned or unbanned
 * (already-banned ones count 0) and reject with an F2bzError.
 */
export interface BanExecutor {
  ban(jail: string, ips: readonly string[]): Promise<number>;
  unban(jail: string, ips: readonly string[]): Promise<number>;
}

/**
 * `executor` with the time of each call (one fail2ban-client process, or one ban-helper request)
 * handed to `record`, in seconds, whether it succeeded or failed: slow calls are what delay bans.
 */
export function timedExecutor(
  executor: BanExecutor,
  record: (seconds: number) => void,
  now: () => number = performance.now.bind(performance),
): BanExecutor {
  const timed = async (call: () => Promise<number>) => {
    const start = now();
    try {
      return await call();
    } finally {
      record(Math.max(0, now() - start) / 1000);
    }
  };
  return {
    ban: (jail, ips) => timed(() => executor.ban(jail, ips)),
    unban: (jail, ips) => timed(() => executor.unban(jail, ips)),
  };
}
