import { promises as fs } from "node:fs";
import { readPurgeMarkers } from "../keys/purge-marker.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../metrics/registry.js";
import { LimitedLog, RateLimitedLog } from "../toolkit/limited-log.js";
import type { Expiry, PublisherStore } from "./store.js";

export interface PurgeOptions {
  keysDir: string;
  store: PublisherStore;
  /** Whether the origin still counts as an authorized monitor (the key reload has not caught up). */
  isAuthorizedOrigin: (origin: string, verifyKey: Uint8Array) => boolean;
  /** Tells subscribers that a hold is gone (an unsigned expiry: they release that event id only). */
  announce: (expiry: Expiry) => void;
  metrics: Metrics;
  logger: Logger;
}

/**
 * `keys revoke --purge-bans`: drops every hold of a revoked origin and announces an expiry for each
 * (the publisher cannot sign an unban as the origin). Acts on a marker only once the origin no
 * longer counts as authorized, so it cannot add a ban after the purge; then removes the marker. A
 * purge is idempotent: a marker the publisher may not remove is purged again, finding nothing.
 */
export class RevokedPurger {
  private running: Promise<void> | undefined;
  private readonly problemLog: LimitedLog;

  constructor(private readonly o: PurgeOptions) {
    this.problemLog = new LimitedLog(o.logger, new RateLimitedLog(600_000, 1));
  }

  /** One pass over the markers; a pass already running is not started twice. */
  run(): Promise<void> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<void> {
    const o = this.o;
    const { markers, invalid } = await readPurgeMarkers(o.keysDir);
    for (const file of invalid) this.problem(file, "purge marker is not '<node id> <verify key>', ignored");
    for (const marker of markers) {
      if (o.isAuthorizedOrigin(marker.origin, marker.verifyKey)) continue;
      const expiries = o.store.purgeOrigin(marker.origin);
      for (const expiry of expiries) o.announce(expiry);
      o.metrics.inc("bans_purged_total", expiries.length);
      if (expiries.length > 0) {
        o.logger.warn({ node: marker.origin, count: expiries.length }, "bans of a revoked origin lifted");
      }
      await fs.unlink(marker.file).catch((error: Error) => this.problem(marker.file, error.message));
    }
  }

  private problem(file: string, message: string): void {
    this.problemLog.warn(`${file} ${message}`, { file }, message);
  }
}
