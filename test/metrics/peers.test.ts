import test from "ava";
import { createClientSocket } from "../../src/transport/sockets.js";
import { waitFor } from "../harness/wait.js";
import { spawnDaemon } from "../helpers/cli.js";
import { testCluster } from "../helpers/cluster.js";
import { DEADLINE_MS } from "../helpers/logs.js";
import { publisherPorts, startTestPublisher, stopPublisher } from "../helpers/publisher.js";
import { cliPublisher, metricsPort, request, sample } from "./helpers.js";

/** Scrapes until `series` reads `value`; fails with the value it read last. */
async function gaugeReaches(port: number, series: string, value: number): Promise<void> {
  let last: number | undefined;
  try {
    await waitFor(
      async () => {
        last = sample((await request(port)).body, series);
        return last === value ? true : undefined;
      },
      { timeoutMs: DEADLINE_MS, what: `${series} to read ${value}` },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; it read ${String(last)}`);
  }
}

test("a publisher's peers_connected on feed goes 0 → 1 → 0 as a subscriber connects and leaves", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const pub = await cluster.node("pub");
  const web1 = await cluster.node("web1");
  await cluster.authorize(web1, "subscriber");
  const { daemon, port } = await cliPublisher(t, cluster, pub);
  const feed = /"feed":"(tcp:\/\/[^"]+)"/.exec(daemon.stdout())?.[1];
  t.truthy(feed);
  const series = 'f2bz_peers_connected{process="publisher",endpoint="feed"}';

  const page = (await request(port)).body;
  t.is(sample(page, series), 0);
  t.is(sample(page, 'f2bz_peers_connected{process="publisher",endpoint="submit"}'), 0);
  t.is(sample(page, 'f2bz_peers_connected{process="publisher",endpoint="snapshot"}'), 0);

  const subscriber = createClientSocket("subscriber", {
    identity: web1.identity,
    serverKey: pub.identity.curvePublic,
  });
  t.teardown(() => subscriber.close());
  subscriber.connect(feed!);
  await gaugeReaches(port, series, 1);
  subscriber.close();
  await gaugeReaches(port, series, 0);
  t.is(await daemon.stop(), 0);
});

test("a subscriber's publishers_connected goes 0 → 1 → 0 as its publisher comes and goes", async (t) => {
  t.timeout(90_000);
  const cluster = await testCluster(t);
  const pub = await cluster.node("pub");
  const web2 = await cluster.node("web2");
  await cluster.authorize(web2, "subscriber");
  // The ports a publisher binds later: the subscriber starts with nobody listening there.
  const ports = await publisherPorts(t, cluster, pub);
  const config = await cluster.configFile(web2, {
    subscriber: {
      publishers: [{ feed: ports.feed, snapshot: ports.snapshot, key: pub.publicKey }],
      action: { type: "log" },
    },
    metrics: { listen: "127.0.0.1:0" },
    logging: { level: "info" },
  });
  const daemon = spawnDaemon(t, ["subscriber", "--config", config]);
  await daemon.started("subscriber");
  const port = metricsPort(daemon.stdout());
  const series = 'f2bz_publishers_connected{process="subscriber"}';
  t.is(sample((await request(port)).body, series), 0);

  const publisher = await startTestPublisher(t, cluster, { publisher: { ...ports } });
  await gaugeReaches(port, series, 1);
  await stopPublisher(publisher.running);
  await gaugeReaches(port, series, 0);
  t.is(await daemon.stop(), 0);
});
