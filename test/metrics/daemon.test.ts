import { writeFile } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import { generateIdentity } from "../../src/keys/identity.js";
import { createClientSocket } from "../../src/transport/sockets.js";
import { waitFor } from "../harness/wait.js";
import { runCli, spawnDaemon } from "../helpers/cli.js";
import { testCluster } from "../helpers/cluster.js";
import { tempDir } from "../helpers/temp-dir.js";
import { rawRequest } from "../helpers/unix-socket.js";
import { banHelperConfig, cliPublisher, listening, metricsPort, request, sample } from "./helpers.js";

test("a publisher started by the CLI serves its gauges and live counters, and stops cleanly", async (t) => {
  t.timeout(60_000);
  const cluster = await testCluster(t);
  const node = await cluster.node("pub");
  const { daemon, port } = await cliPublisher(t, cluster, node);

  const page = await request(port);
  t.is(page.status, 200);
  t.is(sample(page.body, 'f2bz_bans_active{process="publisher"}'), 0);
  t.is(sample(page.body, 'f2bz_publisher_sequence{process="publisher"}'), 0);

  // A stranger's key knocks at the submit port: the ZAP handler's counters show it at once.
  const submit = /"submit":"(tcp:\/\/[^"]+)"/.exec(daemon.stdout())?.[1];
  t.truthy(submit);
  const stranger = createClientSocket("request", {
    identity: await generateIdentity("stranger"),
    serverKey: node.identity.curvePublic,
  });
  t.teardown(() => stranger.close());
  stranger.connect(submit!);
  const denied = await waitFor(
    async () => {
      const page = (await request(port)).body;
      const value = sample(page, 'f2bz_zap_denied_total{process="publisher",reason="unknown"}') ?? 0;
      return value >= 1 ? value : undefined;
    },
    { timeoutMs: 10_000, what: "the denial to be counted" },
  );
  t.true(denied >= 1);

  t.is(await daemon.stop(), 0);
  t.true(daemon.stdout().includes('"msg":"publisher stopped"'));
  await t.throwsAsync(request(port), { code: "ECONNREFUSED" });
});

test("the root ban-helper serves metrics only at metrics.banHelper, never at metrics.listen", async (t) => {
  t.timeout(60_000);
  const dir = await tempDir(t);
  // metrics.listen names a port this test holds: a ban-helper that tried it would stop with 69.
  const shared = await listening(t);
  const config = await banHelperConfig(dir, `{ listen: "127.0.0.1:${shared}", banHelper: "127.0.0.1:0" }`);
  const daemon = spawnDaemon(t, ["ban-helper", "--config", config]);
  await daemon.started("ban-helper");
  const own = metricsPort(daemon.stdout());
  t.not(own, shared);

  t.is(await rawRequest(path.join(dir, "ban.sock"), "BAN sshd 192.0.2.1\n"), "ERR jail not allowed 'sshd'\n");
  const page = (await request(own)).body;
  t.is(sample(page, 'f2bz_helper_requests_refused_total{process="ban-helper",reason="jail-not-allowed"}'), 1);
  t.is(await daemon.stop(), 0);
});

test("a metrics port in use stops the daemon before it reports started, with one line", async (t) => {
  const dir = await tempDir(t);
  const port = await listening(t);
  const config = path.join(dir, "f2bz.yaml");
  await writeFile(
    config,
    [
      "node: { name: helper, identity: k }",
      `banHelper: { socket: ${path.join(dir, "ban.sock")}, client: ${path.join(dir, "none")}, jails: [f2bz], stateDir: ${path.join(dir, "state")} }`,
      `metrics: { banHelper: "127.0.0.1:${port}" }`,
      "logging: { level: warn }",
      "",
    ].join("\n"),
  );
  const result = await runCli(["ban-helper", "--config", config]);
  t.is(result.code, 69);
  t.is(
    result.stderr,
    `f2bz ban-helper: cannot serve metrics on '127.0.0.1:${port}': EADDRINUSE, expected a free loopback port (each f2bz daemon of a host needs its own: metrics.banHelper)\n`,
  );
  t.false(result.stdout.includes("ban-helper started"));
});

test("metrics on a non-loopback address are refused before anything starts", async (t) => {
  const cluster = await testCluster(t);
  const node = await cluster.node("pub");
  const file = await cluster.configFile(node, {
    publisher: { keys: cluster.keysDir },
    metrics: { listen: "0.0.0.0:9464" },
  });
  for (const command of ["publisher", "check-config"]) {
    const result = await runCli([command, "--config", file]);
    t.is(result.code, 78, command);
    t.is(result.stdout, "");
    t.regex(
      result.stderr,
      new RegExp(
        `^f2bz ${command}: config '${file.replaceAll(".", "\\.")}' line \\d+: 'metrics\\.listen': expected a loopback address and port such as 127\\.0\\.0\\.1:9464 or \\[::1\\]:9464, found '0\\.0\\.0\\.0:9464'\\n$`,
      ),
    );
  }
});
