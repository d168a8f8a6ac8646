import net from "node:net";
import test from "ava";
import { runCli } from "../helpers/cli.js";
import { ANY_PORT, testCluster } from "../helpers/cluster.js";

test("a publisher whose port is taken exits 69 with one line naming the address", async (t) => {
  const cluster = await testCluster(t);
  const node = await cluster.node("pub");
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
  t.teardown(() => squatter.close());
  const port = (squatter.address() as net.AddressInfo).port;
  const feed = `tcp://127.0.0.1:${port}`;
  const config = await cluster.configFile(node, {
    publisher: { submit: ANY_PORT, feed, snapshot: ANY_PORT, keys: cluster.keysDir },
  });
  const result = await runCli(["publisher", "--config", config]);
  t.is(result.code, 69);
  t.is(result.stderr.trim(), `f2bz publisher: cannot bind '${feed}': EADDRINUSE`);
});
