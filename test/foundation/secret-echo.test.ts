/**
 * A malformed secret key file is reported by file and line, never with its text: an error that
 * quoted the bad line echoed 27 of the 40 characters of the secret key to the terminal and logs.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { loadSecretIdentity } from "../../src/keys/files.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp-dir.js";

/** Every 8-character piece of the two secret values: any of them in an error is a leak. */
function pieces(secretText: string): string[] {
  const values = [...secretText.matchAll(/(?:secret-key|signing-key) = "([^"]+)"/g)].map((m) => m[1]!);
  if (values.length !== 2) throw new Error("expected two secret values");
  return values.flatMap((v) => Array.from({ length: v.length - 7 }, (_, i) => v.slice(i, i + 8)));
}

// The secret file keygen writes has `secret-key` on line 10 and `signing-key` on line 13.
const malformed: [string, number, (text: string) => string][] = [
  ["a colon for the equals sign", 10, (s) => s.replace("secret-key = ", "secret-key : ")],
  ["no equals sign", 13, (s) => s.replace("signing-key = ", "signing-key ")],
  ["a value split across the name", 10, (s) => s.replace(/secret-key = "(.{5})/, (_, v) => `${v} "`)],
];

for (const [what, line, edit] of malformed) {
  test(`a malformed secret key file is reported by file and line only: ${what}`, async (t) => {
    const dir = await tempDir(t);
    const made = await runCli(["keygen", "--name", "web1", "--dir", path.join(dir, "nodes")]);
    t.is(made.code, 0, made.stderr);
    const file = path.join(dir, "nodes", "web1.key_secret");
    const original = await readFile(file, "utf8");
    const leaks = pieces(original);
    await writeFile(file, edit(original), { mode: 0o600 });
    const expected = `key file '${file}' is not a zpl certificate (line ${line}: invalid name)`;

    const error = await t.throwsAsync(loadSecretIdentity(file), { instanceOf: F2bzError });
    t.is(error?.message, expected);

    const config = path.join(dir, "f2bz.yaml");
    const log = path.join(dir, "f2bz.log");
    await writeFile(
      config,
      [
        "node:",
        "  name: web1",
        "  identity: nodes/web1.key_secret",
        "  stateDir: state",
        "publisher:",
        "  submit: tcp://127.0.0.1:*",
        "  feed: tcp://127.0.0.1:*",
        "  snapshot: tcp://127.0.0.1:*",
        "  keys: keys",
        "logging:",
        "  level: trace",
        `  file: ${log}`,
        "",
      ].join("\n"),
    );
    const check = await runCli(["check-config", "--config", config]);
    t.is(check.code, 65);
    t.is(check.stderr, `f2bz check-config: ${expected}\n`);
    const daemon = await runCli(["publisher", "--config", config]);
    t.is(daemon.code, 65);
    t.is(daemon.stderr, `f2bz publisher: ${expected}\n`);
    const logged = await readFile(log, "utf8").catch(() => "");
    for (const output of [check.stdout, check.stderr, daemon.stdout, daemon.stderr, logged]) {
      const leaked = leaks.filter((piece) => output.includes(piece));
      t.deepEqual(leaked, [], `secret text in: ${output}`);
    }
  });
}
