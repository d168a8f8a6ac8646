import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import test from "ava";
import { Metrics } from "../../src/metrics/registry.js";
import type { ActionRequest } from "../../src/subscriber/action.js";
import { checkTemplate, ExecAction, expandTemplate } from "../../src/subscriber/exec-action.js";
import { waitFor } from "../harness/wait.js";
import { testLogger } from "../helpers/cluster.js";
import { tempDir } from "../helpers/temp-dir.js";
import { captureLogger, DEADLINE_MS } from "./helpers.js";

const request: ActionRequest = {
  kind: "ban",
  jail: "sshd",
  ip: "2001:db8::5",
  origin: "0123456789abcdef0123456789abcdef",
  expires: 1_800_000_000_999,
};

test("expandTemplate replaces placeholders inside each argument, one argument each", (t) => {
  const argv = expandTemplate(
    [
      "/usr/local/bin/block",
      "{kind}",
      "--jail={jail}",
      "{ip}",
      "{origin}:{expires}",
      "{ip} {ip}",
      "{unknown}",
    ],
    request,
  );
  t.deepEqual(argv, [
    "/usr/local/bin/block",
    "ban",
    "--jail=sshd",
    "2001:db8::5",
    "0123456789abcdef0123456789abcdef:1800000000",
    "2001:db8::5 2001:db8::5",
    "{unknown}",
  ]);
});

test("a value full of shell syntax still lands in exactly one argument", (t) => {
  // Checked event fields never look like this; the template must not depend on that.
  const hostile = { ...request, jail: "a b;$(touch /tmp/x)`id`", ip: "1.2.3.4 && rm -rf /" };
  const argv = expandTemplate(["/bin/echo", "{jail}", "{ip}"], hostile);
  t.deepEqual(argv, ["/bin/echo", hostile.jail, hostile.ip]);
});

test("templates are checked at start: absolute program, known placeholders", (t) => {
  t.notThrows(() => checkTemplate(["/usr/bin/logger", "{kind} {ip} until {expires}"]));
  const refused = [
    ["block", "{ip}"],
    ["{ip}"],
    ["/usr/bin/{jail}", "x"],
    ["/usr/bin/logger", "{ipaddr}"],
    [],
  ];
  for (const template of refused) {
    const error = t.throws(() => checkTemplate(template), undefined, JSON.stringify(template));
    t.regex(error?.message ?? "", /^action\.command/);
  }
});

/** A real program that records its argv, one JSON line per call. */
async function recorder(t: import("ava").ExecutionContext, body = "") {
  const dir = await tempDir(t, "f2bz-exec-");
  const out = path.join(dir, "calls.jsonl");
  const script = path.join(dir, "record.mjs");
  await fs.writeFile(
    script,
    `#!${process.execPath}\nimport { appendFileSync } from "node:fs";\n${body}\nappendFileSync(${JSON.stringify(out)}, JSON.stringify(process.argv.slice(2)) + "\\n");\n`,
    { mode: 0o755 },
  );
  const calls = async (): Promise<string[][]> => {
    const text = await fs.readFile(out, "utf8").catch(() => "");
    return text
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as string[]);
  };
  return { dir, script, calls };
}

test("ExecAction runs the program without a shell, argv exactly as expanded", async (t) => {
  const rec = await recorder(t);
  const marker = path.join(rec.dir, "pwned");
  const metrics = new Metrics("subscriber");
  const action = new ExecAction(
    [rec.script, "{kind}", "{jail}", "{ip}", "{origin}", "{expires}", `$(touch ${marker})`, "a b"],
    { timeoutMs: 10_000 },
    testLogger(),
    metrics,
  );
  await action.apply([request, { ...request, kind: "unban", ip: "192.0.2.7" }]);
  await action.close();
  const calls = await rec.calls();
  t.deepEqual(
    calls.sort((a, b) => a[0]!.localeCompare(b[0]!)),
    [
      ["ban", "sshd", "2001:db8::5", request.origin, "1800000000", `$(touch ${marker})`, "a b"],
      ["unban", "sshd", "192.0.2.7", request.origin, "1800000000", `$(touch ${marker})`, "a b"],
    ],
  );
  t.false(existsSync(marker), "no shell ever saw the arguments");
  t.deepEqual(
    [
      metrics.get("bans_applied_total", { kind: "ban" }),
      metrics.get("bans_applied_total", { kind: "unban" }),
    ],
    [1, 1],
  );
});

test("ExecAction keeps ban then unban of one address in order and runs at most two at once", async (t) => {
  // Each call holds a lock file while it runs; more than two at once would leave a third one.
  const rec = await recorder(
    t,
    [
      'import { readdirSync, writeFileSync, rmSync } from "node:fs";',
      "const dir = new URL('.', import.meta.url).pathname;",
      "const lock = dir + 'running-' + process.pid;",
      "writeFileSync(lock, '');",
      "const count = () => readdirSync(dir).filter((f) => f.startsWith('running-')).length;",
      "let most = count();",
      "const until = Date.now() + 500; while (Date.now() < until) most = Math.max(most, count());",
      "if (most > 2) appendFileSync(dir + 'overlap', String(most) + '\\n');",
      "rmSync(lock);",
    ].join("\n"),
  );
  const metrics = new Metrics("subscriber");
  const action = new ExecAction([rec.script, "{kind}", "{ip}"], { timeoutMs: 15_000 }, testLogger(), metrics);
  const ips = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
  await action.apply(ips.map((ip) => ({ ...request, ip })));
  await action.apply(ips.map((ip) => ({ ...request, kind: "unban", ip })));
  await action.close();
  const calls = await rec.calls();
  t.is(calls.length, 6);
  for (const ip of ips) {
    const order = calls.filter((c) => c[1] === ip).map((c) => c[0]);
    t.deepEqual(order, ["ban", "unban"], ip);
  }
  t.false(existsSync(path.join(rec.dir, "overlap")), "never more than two commands at once");
});

test("ExecAction: a failing or hung command is logged and counted, the next still runs", async (t) => {
  // A shell script, not the node recorder: the command that succeeds must finish well inside the
  // timeout that kills the hung one, also on a loaded machine (node alone takes a second to start).
  const dir = await tempDir(t, "f2bz-exec-");
  const out = path.join(dir, "calls");
  const script = path.join(dir, "act");
  await fs.writeFile(
    script,
    `#!/bin/sh\ncase "$1" in hang) exec sleep 60;; fail) exit 3;; esac\necho "$1 $2" >> ${out}\n`,
    { mode: 0o755 },
  );
  const calls = async () => (await fs.readFile(out, "utf8").catch(() => "")).split("\n").filter(Boolean);
  const { logger, lines } = captureLogger();
  const metrics = new Metrics("subscriber");
  const action = new ExecAction([script, "{jail}", "{ip}"], { timeoutMs: 1_500 }, logger, metrics);
  await action.apply([
    { ...request, jail: "hang", ip: "192.0.2.1" },
    { ...request, jail: "fail", ip: "192.0.2.2" },
    { ...request, jail: "ok", ip: "192.0.2.3" },
  ]);
  await waitFor(() => (metrics.get("action_failures_total", { kind: "ban" }) === 2 ? true : undefined), {
    timeoutMs: DEADLINE_MS,
    what: "two failures",
  });
  await action.close();
  t.deepEqual(await calls(), ["ok 192.0.2.3"]);
  const failures = lines.filter((l) => l.msg === "exec action failed");
  t.deepEqual(failures.map((l) => l.jail).sort(), ["fail", "hang"]);
  t.regex(String(failures.find((l) => l.jail === "hang")?.err), /killed after 1500 ms/);
});

test("ExecAction: a full queue drops, counts and says so", async (t) => {
  const rec = await recorder(t);
  const { logger, lines } = captureLogger();
  const metrics = new Metrics("subscriber");
  const action = new ExecAction(
    [rec.script, "{ip}"],
    { timeoutMs: 10_000, concurrency: 1, maxPending: 2 },
    logger,
    metrics,
  );
  const ips = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"];
  await action.apply(ips.map((ip) => ({ ...request, ip })));
  await action.close();
  // One starts at once, two wait, two are refused.
  t.is(metrics.get("action_dropped_total", { kind: "ban" }), 2);
  t.is((await rec.calls()).length, 3);
  t.truthy(lines.find((l) => l.msg === "exec queue full: dropped"));
});
