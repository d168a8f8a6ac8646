import os from "node:os";
import { parseAddress } from "./address.js";

/**
 * This host's own addresses, canonical, for the never-ban list: a cluster ban of one of them would
 * cut the host off from its own services. The impure part of the policy folder: the interfaces are
 * read when called; HostAddressWatch below reads them again periodically.
 */
export function hostAddresses(): string[] {
  const found = new Set<string>();
  for (const infos of Object.values(os.networkInterfaces())) {
    for (const info of infos ?? []) {
      // Node reports a link-local scope separately (`scopeid`), but be safe about a "%zone" suffix.
      const parsed = parseAddress(info.address.split("%")[0] ?? "");
      if (parsed.ok) found.add(parsed.ip);
    }
  }
  return [...found].sort();
}

export interface HostAddressWatchOptions {
  /** Reads the addresses (default: this host's interfaces); tests inject their own. */
  read?: () => string[];
  /** How often they are read again (default 60 s): DHCP, SLAAC and VPNs add addresses at any time. */
  intervalMs?: number;
  /** Called with the new list whenever it differs from the last one. */
  onChange?: (addresses: readonly string[], previous: readonly string[]) => void;
}

export const HOST_REFRESH_MS = 60_000;

/**
 * This host's addresses, read at start and again every `intervalMs`: an address that appears later
 * (a new interface, a renewed lease) is protected within one interval, not only after a restart.
 * The timer does not keep the process alive; `close()` stops it and may be called twice.
 */
export class HostAddressWatch {
  private current: readonly string[];
  private timer: NodeJS.Timeout | undefined;
  private readonly read: () => string[];

  constructor(private readonly options: HostAddressWatchOptions = {}) {
    this.read = options.read ?? hostAddresses;
    this.current = normalize(this.read());
    this.timer = setInterval(() => this.refresh(), options.intervalMs ?? HOST_REFRESH_MS);
    this.timer.unref();
  }

  get addresses(): readonly string[] {
    return this.current;
  }

  /** Reads the addresses now; true when they changed. A failed read keeps the last list. */
  refresh(): boolean {
    let next: readonly string[];
    try {
      next = normalize(this.read());
    } catch {
      return false;
    }
    if (next.length === this.current.length && next.every((a, i) => a === this.current[i])) return false;
    const previous = this.current;
    this.current = next;
    this.options.onChange?.(next, previous);
    return true;
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

function normalize(addresses: readonly string[]): string[] {
  const found = new Set<string>();
  for (const address of addresses) {
    const parsed = parseAddress(address.split("%")[0] ?? "");
    if (parsed.ok) found.add(parsed.ip);
  }
  return [...found].sort();
}
