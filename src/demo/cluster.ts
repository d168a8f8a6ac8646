import { promises as fs } from "node:fs";
import path from "node:path";
import { stringify } from "yaml";
import { writeIdentity } from "../keys/files.js";
import { generateIdentity } from "../keys/identity.js";
import { ensureLayout, roleDir } from "../keys/store.js";
import { hostAddresses, NeverBanList } from "../policy/never-ban.js";

export interface DemoNode {
  name: string;
  config: string;
  log: string;
  pid: number;
}

export interface DemoCluster {
  dir: string;
  publisherConfig: string;
  keysDir: string;
  nodes: DemoNode[];
}

/** The endpoints the publisher bound, as its "listening" line reports them. */
export interface DemoEndpoints {
  submit: string;
  feed: string;
  snapshot: string;
}

/**
 * Writes a complete cluster into `dir`: fresh identities made by keygen's own code, the publisher's
 * key directory with every node authorized as monitor and subscriber, and the publisher's config,
 * exactly as an operator would write them (paths relative to the config file). The publisher binds
 * port 0 (`*`): the kernel picks free ports, so no port is probed and then lost to another process
 * before the bind; the nodes' configs follow from the ports it reports (`writeNodeConfigs`).
 */
export async function createCluster(dir: string, nodeCount: number): Promise<DemoCluster> {
  const keys = path.join(dir, "keys");
  const keysDir = path.join(dir, "publisher", "keys");
  await ensureLayout(keysDir);
  const publisherId = await generateIdentity("publisher");
  await writeIdentity(keys, publisherId, false);

  const publisherConfig = path.join(dir, "publisher.yaml");
  await fs.writeFile(
    publisherConfig,
    stringify({
      node: { name: "publisher", identity: "keys/publisher.key_secret", stateDir: "state/publisher" },
      publisher: {
        submit: "tcp://127.0.0.1:*",
        feed: "tcp://127.0.0.1:*",
        snapshot: "tcp://127.0.0.1:*",
        keys: "publisher/keys",
      },
      logging: { level: "info" },
    }),
  );

  const nodes: DemoNode[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    const name = `node${i}`;
    const identity = await generateIdentity(name);
    const written = await writeIdentity(keys, identity, false);
    for (const role of ["monitor", "subscriber"] as const) {
      await fs.copyFile(written.publicFile, path.join(roleDir(keysDir, role), `${name}.key`));
    }
    const log = path.join(dir, "logs", name, "fail2ban.log");
    await fs.mkdir(path.dirname(log), { recursive: true });
    await fs.writeFile(log, "");
    nodes.push({ name, config: path.join(dir, `${name}.yaml`), log, pid: 10_000 + i });
  }
  return { dir, publisherConfig, keysDir, nodes };
}

/** One config file per node (a monitor and a subscriber), pointing at the publisher's bound ports. */
export async function writeNodeConfigs(cluster: DemoCluster, bound: DemoEndpoints): Promise<void> {
  for (const { name, config } of cluster.nodes) {
    await fs.writeFile(
      config,
      stringify({
        node: { name, identity: `keys/${name}.key_secret`, stateDir: `state/${name}` },
        monitor: {
          log: `logs/${name}/fail2ban.log`,
          banTime: "10m",
          publishers: [{ submit: bound.submit, key: "keys/publisher.key" }],
        },
        subscriber: {
          publishers: [{ feed: bound.feed, snapshot: bound.snapshot, key: "keys/publisher.key" }],
          action: { type: "fail2ban", jail: "same", dryRun: true },
        },
        logging: { level: "info" },
      }),
    );
  }
}

/** A line as fail2ban 1.0 writes it to its log file. */
export function fail2banLine(
  now: Date,
  pid: number,
  jail: string,
  kind: "ban" | "unban",
  ip: string,
): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  const stamp =
    `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())} ` +
    `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())},${pad(now.getMilliseconds(), 3)}`;
  return `${stamp} fail2ban.actions        [${pid}]: NOTICE  [${jail}] ${kind === "ban" ? "Ban" : "Unban"} ${ip}\n`;
}

/**
 * Documentation addresses only (RFC 5737, RFC 3849), never anyone's real address; every fourth one
 * IPv6. Addresses on the never-ban list (this host's own, say) are skipped: they would be refused.
 */
export function demoAddresses(count: number): string[] {
  const never = NeverBanList.create({ hostAddresses: hostAddresses() });
  const pools = ["192.0.2", "198.51.100", "203.0.113"];
  const out: string[] = [];
  for (let n = 0; out.length < count; n++) {
    const ip =
      n % 4 === 3 ? `2001:db8::${(n + 1).toString(16)}` : `${pools[n % 3]}.${1 + (Math.floor(n / 3) % 254)}`;
    if (!never.contains(ip) && !out.includes(ip)) out.push(ip);
  }
  return out;
}
