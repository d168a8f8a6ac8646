import { spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, fstatSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { isJournalStream, syslogPriority } from "../../src/logging.js";
import { waitFor } from "../harness/wait.js";
import { CLI, ensureBuilt } from "../helpers/cli.js";
import { ANY_PORT, testCluster } from "../helpers/cluster.js";

test("pino levels map to syslog priorities: fatal crit, error err, warn warning, info info, debug debug", (t) => {
  t.deepEqual([60, 50, 40, 30, 20, 10].map(syslogPriority), [2, 3, 4, 6, 7, 7]);
});

test("stdout is a journal stream only when JOURNAL_STREAM names its very device and inode", (t) => {
  const stdout = { dev: 2049, ino: 77 };
  t.true(isJournalStream({ JOURNAL_STREAM: "2049:77" }, stdout));
  t.false(
    isJournalStream({ JOURNAL_STREAM: "2049:78" }, stdout),
    "inherited by a child with stdout redirected",
  );
  t.false(isJournalStream({}, stdout));
  t.false(isJournalStream({ JOURNAL_STREAM: "2049:77x" }, stdout));
  t.false(isJournalStream({ JOURNAL_STREAM: "2049:77" }, undefined));
});

/** Runs a publisher whose keys directory is missing (a warning at start) with stdout in a file. */
async function publisherLines(
  t: ExecutionContext,
  journalStream: (stdout: { dev: number; ino: number }) => string,
) {
  const cluster = await testCluster(t);
  const node = await cluster.node("pub");
  const config = await cluster.configFile(node, {
    publisher: {
      submit: ANY_PORT,
      feed: ANY_PORT,
      snapshot: ANY_PORT,
      keys: path.join(cluster.dir, "no-such-keys"),
    },
    logging: { level: "info" },
  });
  const out = path.join(cluster.dir, "stdout");
  const fd = openSync(out, "w");
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, "publisher", "--config", config], {
    env: { ...process.env, NO_COLOR: "1", JOURNAL_STREAM: journalStream(fstatSync(fd)) },
    stdio: ["ignore", fd, "inherit"],
  });
  closeSync(fd);
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const exit = once(child, "close");
  await waitFor(
    async () => ((await readFile(out, "utf8")).includes("publisher started") ? true : undefined),
    {
      timeoutMs: 20_000,
      what: "the publisher to start",
    },
  );
  child.kill("SIGTERM");
  t.deepEqual(await exit, [0, null]);
  return (await readFile(out, "utf8")).trimEnd().split("\n");
}

test("on its journald stream a daemon starts each JSON line with the priority journald records", async (t) => {
  t.timeout(60_000);
  const lines = await publisherLines(t, (s) => `${s.dev}:${s.ino}`);
  const warning = lines.find((l) => l.includes("does not exist"));
  t.regex(warning ?? "", /^<4>\{"level":40,/);
  t.regex(lines.find((l) => l.includes('"msg":"publisher started"')) ?? "", /^<6>\{"level":30,/);
  for (const line of lines) {
    const match = /^<(\d)>(\{.*\})$/.exec(line);
    t.truthy(match, line);
    t.is(Number(match?.[1]), syslogPriority((JSON.parse(match?.[2] ?? "{}") as { level: number }).level));
  }
});

test("a JOURNAL_STREAM inherited with stdout elsewhere leaves the JSON lines bare", async (t) => {
  t.timeout(60_000);
  const lines = await publisherLines(t, (s) => `${s.dev}:${s.ino + 1}`);
  t.true(lines.some((l) => l.includes("does not exist")));
  for (const line of lines) t.notThrows(() => JSON.parse(line), line);
});
