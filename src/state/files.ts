/**
 * The state file of each daemon in `node.stateDir`. Here, in the core, because more than their
 * daemon open them: `f2bz status` reads all three and the monitor reads the subscriber's ledger,
 * and neither may import a daemon.
 */
export type DaemonName = "publisher" | "monitor" | "subscriber";

export const STATE_FILES: Readonly<Record<DaemonName, string>> = {
  publisher: "publisher.sqlite3",
  monitor: "monitor.sqlite3",
  subscriber: "subscriber.sqlite3",
};

export const PUBLISHER_STATE_FILE = STATE_FILES.publisher;
export const MONITOR_STATE_FILE = STATE_FILES.monitor;
export const SUBSCRIBER_STATE_FILE = STATE_FILES.subscriber;
