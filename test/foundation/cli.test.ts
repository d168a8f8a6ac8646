import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import test, { type ExecutionContext } from "ava";
import { commands } from "../../src/commands/index.js";
import { type CliResult, runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp-dir.js";

function oneLine(t: ExecutionContext, r: CliResult) {
  t.is(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
  t.false(r.stderr.includes("    at "), r.stderr);
  t.false(r.stderr.includes("internal error"), r.stderr);
}

test("f2bz --help lists every registered command, one line each", async (t) => {
  const r = await runCli(["--help"]);
  t.is(r.code, 0);
  t.is(r.stderr, "");
  const lines = r.stdout.split("\n");
  t.true(commands.length >= 3);
  for (const command of commands) {
    const matching = lines.filter((line) => new RegExp(`^ {2}${command.name} +\\S`).test(line));
    t.is(matching.length, 1, command.name);
    t.true(matching[0]!.includes(command.summary), command.name);
  }
  for (const alias of [["-h"], ["help"]]) {
    const again = await runCli(alias);
    t.is(again.code, 0);
    t.is(again.stdout, r.stdout);
  }
});

test("f2bz without a command prints the overview and exits 64", async (t) => {
  const r = await runCli([]);
  t.is(r.code, 64);
  t.regex(r.stdout, /^usage: f2bz <command> \[options\]/m);
});

test("f2bz --version prints the package version", async (t) => {
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  const r = await runCli(["--version"]);
  t.is(r.code, 0);
  t.is(r.stdout, `f2bz ${pkg.version}\n`);
});

for (const command of commands) {
  test(`f2bz ${command.name} --help prints usage and exits 0 without doing anything`, async (t) => {
    const dir = await tempDir(t);
    for (const flag of ["--help", "-h"]) {
      const r = await runCli([command.name, flag], { cwd: dir });
      t.false(r.timedOut);
      t.is(r.code, 0, r.stderr);
      t.is(r.stderr, "");
      t.true(r.stdout.startsWith(`usage: f2bz ${command.name}`), r.stdout);
      t.true(r.stdout.includes(command.summary));
    }
    t.deepEqual(await readdir(dir), []);
  });

  test(`f2bz ${command.name} with an unknown option: one line on stderr, exit 64`, async (t) => {
    const r = await runCli([command.name, "--no-such-option"]);
    t.false(r.timedOut);
    t.is(r.code, 64);
    oneLine(t, r);
    t.is(
      r.stderr,
      `f2bz ${command.name}: unknown option '--no-such-option' (see 'f2bz ${command.name} --help')\n`,
    );
    t.is(r.stdout, "");
  });
}

test("an unknown command: one line naming the known ones, exit 64", async (t) => {
  const r = await runCli(["frobnicate"]);
  t.is(r.code, 64);
  oneLine(t, r);
  t.is(
    r.stderr,
    `f2bz: unknown command 'frobnicate', expected one of: ${commands.map((c) => c.name).join(", ")}\n`,
  );
});

test("an unknown command is quoted safely: control characters cannot reach the terminal", async (t) => {
  const r = await runCli(["evil\x1b[31m\nsecond line"]);
  t.is(r.code, 64);
  oneLine(t, r);
  t.false(r.stderr.includes("\x1b"));
});

test("an option without its value: one line, exit 64", async (t) => {
  const r = await runCli(["keygen", "--name"]);
  t.is(r.code, 64);
  oneLine(t, r);
  t.is(r.stderr, "f2bz keygen: option '-n, --name <value>' argument missing (see 'f2bz keygen --help')\n");
});

test("a boolean option given a value: one line, exit 64", async (t) => {
  const r = await runCli(["keygen", "--name", "x", "--force=yes"]);
  t.is(r.code, 64);
  oneLine(t, r);
  t.regex(r.stderr, /^f2bz keygen: option '--force' does not take an argument/);
});

test("an operating system error on a path the operator gave: one line, exit 74", async (t) => {
  const dir = await tempDir(t);
  await mkdir(`${dir}/keys/authorized/monitors`, { recursive: true });
  await writeFile(`${dir}/keys/revoked`, "not a directory");
  const r = await runCli(["keys", "revoke", "web1", "--keys", `${dir}/keys`]);
  t.is(r.code, 74);
  oneLine(t, r);
  t.is(r.stderr, `f2bz keys: mkdir '${dir}/keys/revoked' failed: EEXIST (file already exists)\n`);
});
