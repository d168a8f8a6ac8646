import { promises as fs } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { stringify } from "yaml";
import { F2bzError } from "../errors.js";
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

/**
 * A free TCP port on 127.0.0.1 (the demo never listens anywhere else), from 20000–31999: below the
 * kernel's ephemeral range, so an outgoing connection cannot take it before the publisher binds it.
 */
async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new F2bzError("DEMO_FAILED", "no free port on 127.0.0.1 between 20000 and 31999");
}

/**
 * Writes a complete cluster into `dir`: fresh identities made by keygen's own code, the publisher's
 * key directory with every node authorized as monitor and subscriber, and one config file per
 * process host, exactly as an operator would write them (paths relative to the config file).
 */
export async function createCluster(dir: string, nodeCount: number): Promise<DemoCluster> {
  const keys = path.join(dir, "keys");
  const keysDir = path.join(dir, "publisher", "keys");
  await ensureLayout(keysDir);
  const publisherId = await generateIdentity("publisher");
  await writeIdentity(keys, publisherId, false);
  const [submit, feed, snapshot] = [await freePort(), await freePort(), await freePort()];
  const endpoint = (port: number) => `tcp://127.0.0.1:${port}`;

  const publisherConfig = path.join(dir, "publisher.yaml");
  await fs.writeFile(
    publisherConfig,
    stringify({
      node: { name: "publisher", identity: "keys/publisher.key_secret", stateDir: "state/publisher" },
      publisher: {
        submit: endpoint(submit),
        feed: endpoint(feed),
        snapshot: endpoint(snapshot),
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
    const config = path.join(dir, `${name}.yaml`);
    await fs.writeFile(
      config,
      stringify({
        node: { name, identity: `keys/${name}.key_secret`, stateDir: `state/${name}` },
        monitor: {
          log: `logs/${name}/fail2ban.log`,
          banTime: "10m",
          publishers: [{ submit: endpoint(submit), key: "keys/publisher.key" }],
        },
        subscriber: {
          publishers: [{ feed: endpoint(feed), snapshot: endpoint(snapshot), key: "keys/publisher.key" }],
          action: { type: "fail2ban", jail: "same", dryRun: true },
        },
        logging: { level: "info" },
      }),
    );
    nodes.push({ name, config, log, pid: 10_000 + i });
  }
  return { dir, publisherConfig, keysDir, nodes };
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
