import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import test from "ava";
import { ensureBuilt } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp-dir.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ADDON = "build/Release/better_sqlite3.node";

interface Packed {
  filename: string;
  files: { path: string }[];
}

/**
 * `npm pack`, then the tarball installed into an empty prefix as a user would, and the installed
 * `f2bz` run. One deliberate shortcut, for time: install scripts are skipped, which spares the
 * from-source build of better-sqlite3 (minutes here; no prebuilt binary for this platform), and the
 * addon this checkout's `npm ci` compiled from the same version for the same Node is copied in.
 * zeromq needs no script (its package carries prebuilt binaries). Everything else (the files the
 * package ships, its dependency ranges, its bin link) is what a fresh machine gets; packages come
 * from npm's cache when it has them, from the registry otherwise. Optional dependencies are left
 * out, to show that f2bz runs without pino-pretty.
 */
test("npm pack gives a package that installs, runs f2bz, and ships its licence and docs", async (t) => {
  t.timeout(180_000);
  ensureBuilt();
  const out = await tempDir(t, "f2bz-pack-");
  const packed = JSON.parse(
    (
      await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", out], {
        cwd: root,
        timeout: 60_000,
      })
    ).stdout,
  ) as Packed[];
  const files = packed[0]!.files.map((f) => f.path);
  for (const f of [
    "LICENSE",
    "README.md",
    "SECURITY.md",
    "CHANGELOG.md",
    "bin/f2bz.js",
    "dist/cli.js",
    "config/f2bz.example.yaml",
    "tools/install.sh",
    "tools/systemd/f2bz-publisher.service",
    "tools/fail2ban/jail.d/f2bz.conf",
  ])
    t.true(files.includes(f), `${f} is in the package`);
  t.false(
    files.some((f) => /^(test|src|bench|seed)\//.test(f) || f.endsWith("key_secret")),
    "no tests, sources or secrets",
  );
  const license = await fs.readFile(path.join(root, "LICENSE"), "utf8");
  t.regex(license, /GNU GENERAL PUBLIC LICENSE\s+Version 3, 29 June 2007/);
  const manifest = JSON.parse(await fs.readFile(path.join(root, "package.json"), "utf8")) as {
    license: string;
  };
  t.is(manifest.license, "GPL-3.0-or-later");

  const prefix = path.join(out, "prefix");
  await fs.mkdir(prefix);
  await run(
    "npm",
    [
      "install",
      "--prefix",
      prefix,
      "--ignore-scripts",
      "--omit=optional",
      "--prefer-offline",
      "--no-audit",
      "--no-fund",
      "--no-save",
      path.join(out, packed[0]!.filename),
    ],
    { cwd: out, timeout: 150_000 },
  );
  const installed = path.join(prefix, "node_modules");
  const sqliteVersion = async (dir: string) =>
    (
      JSON.parse(await fs.readFile(path.join(dir, "better-sqlite3/package.json"), "utf8")) as {
        version: string;
      }
    ).version;
  t.is(await sqliteVersion(installed), await sqliteVersion(path.join(root, "node_modules")));
  await fs.mkdir(path.join(installed, "better-sqlite3/build/Release"), { recursive: true });
  await fs.copyFile(
    path.join(root, "node_modules/better-sqlite3", ADDON),
    path.join(installed, "better-sqlite3", ADDON),
  );
  t.false(existsSync(path.join(installed, "pino-pretty")), "optional pino-pretty left out");
  t.false(existsSync(path.join(installed, "@types")), "no type packages in a production install");

  const f2bz = path.join(installed, ".bin/f2bz");
  const env = { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`, NO_COLOR: "1" };
  const help = await run(f2bz, ["--help"], { cwd: out, env, timeout: 30_000 });
  t.regex(help.stdout, /keygen/);
  const keys = path.join(out, "keys");
  const keygen = await run(f2bz, ["keygen", "--name", "fresh1", "--dir", keys], {
    cwd: out,
    env,
    timeout: 30_000,
  });
  t.regex(keygen.stdout, /^node id: +[0-9a-f]{32}$/m);
  t.is((await fs.stat(path.join(keys, "fresh1.key_secret"))).mode & 0o777, 0o600);

  // A daemon on a terminal wants pretty logs; without pino-pretty it logs JSON and goes on to its
  // real problem (here a secret key others can read: exit 77), instead of dying on the transport.
  await fs.chmod(path.join(keys, "fresh1.key_secret"), 0o644);
  await fs.writeFile(
    path.join(out, "f2bz.yaml"),
    [
      "node: { name: fresh1, identity: keys/fresh1.key_secret, stateDir: state }",
      "monitor:",
      "  log: fail2ban.log",
      "  publishers: [{ submit: 'tcp://127.0.0.1:5678', key: keys/fresh1.key }]",
      "",
    ].join("\n"),
  );
  const onTty = await run(
    "script",
    ["-qec", `${f2bz} monitor --config ${path.join(out, "f2bz.yaml")}`, "/dev/null"],
    {
      cwd: out,
      env,
      timeout: 30_000,
    },
  ).then(
    (r) => ({ code: 0, text: r.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, text: e.stdout }),
  );
  t.notRegex(onTty.text, /transport target|internal error/);
  t.regex(onTty.text, /fresh1\.key_secret/);
  t.is(onTty.code, 77, onTty.text);
});
