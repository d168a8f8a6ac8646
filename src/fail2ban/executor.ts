/**
 * What applies bans: `Fail2banClient` (runs fail2ban-client itself) or `BanHelperClient` (asks the
 * root ban-helper). Both resolve to the number of addresses fail2ban newly banned or unbanned
 * (already-banned ones count 0) and reject with an F2bzError.
 */
export interface BanExecutor {
  ban(jail: string, ips: readonly string[]): Promise<number>;
  unban(jail: string, ips: readonly string[]): Promise<number>;
}
