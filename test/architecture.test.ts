import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";

/**
 * DESIGN §10's dependency rules, checked on the source: the core never imports a daemon, the
 * daemons never import each other, and protocol, keys, config, policy and fail2ban know no sockets;
 * `status` reads the daemons' state files through the core alone; the toolkit is a leaf.
 */
const SRC = fileURLToPath(new URL("../src/", import.meta.url));
const CORE = ["config", "keys", "protocol", "transport", "fail2ban", "policy", "state", "toolkit"];
const DAEMONS = ["monitor", "publisher", "subscriber", "ban-helper", "demo"];
const NO_SOCKETS = ["config", "keys", "protocol", "fail2ban", "policy"];

async function importsOf(folder: string): Promise<{ file: string; spec: string }[]> {
  const out: { file: string; spec: string }[] = [];
  for (const name of await readdir(path.join(SRC, folder))) {
    if (!name.endsWith(".ts")) continue;
    const text = await readFile(path.join(SRC, folder, name), "utf8");
    for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)";/gms)) {
      out.push({ file: `${folder}/${name}`, spec: m[1]! });
    }
  }
  return out;
}

const folderOf = (spec: string) => /^\.\.\/([a-z-]+)\//.exec(spec)?.[1];

test("the core never imports a daemon", async (t) => {
  let seen = 0;
  for (const folder of CORE) {
    for (const { file, spec } of await importsOf(folder)) {
      seen++;
      t.false(DAEMONS.includes(folderOf(spec) ?? ""), `${file} imports ${spec}`);
    }
  }
  t.true(seen > 50, "the scan reads the imports");
});

test("the daemons never import each other", async (t) => {
  for (const folder of DAEMONS) {
    for (const { file, spec } of await importsOf(folder)) {
      const target = folderOf(spec);
      t.false(
        target !== undefined && target !== folder && DAEMONS.includes(target),
        `${file} imports ${spec}`,
      );
    }
  }
});

test("protocol, keys, config, policy and fail2ban know no sockets", async (t) => {
  for (const folder of NO_SOCKETS) {
    for (const { file, spec } of await importsOf(folder)) {
      t.false(spec === "zeromq" || folderOf(spec) === "transport", `${file} imports ${spec}`);
    }
  }
});

test("the root ban-helper imports neither transport nor protocol", async (t) => {
  for (const { file, spec } of await importsOf("ban-helper")) {
    t.false(
      ["transport", "protocol"].includes(folderOf(spec) ?? "") || spec === "zeromq",
      `${file} imports ${spec}`,
    );
  }
});

test("status imports only the core (state file names and readers come from state/)", async (t) => {
  const imports = await importsOf("status");
  t.true(imports.length > 3, "the scan reads the imports");
  for (const { file, spec } of imports) {
    const target = folderOf(spec);
    t.true(target === undefined || CORE.includes(target), `${file} imports ${spec}`);
    t.not(spec, "zeromq", `${file} imports ${spec}`);
  }
});

test("the toolkit imports nothing of the project but errors.ts", async (t) => {
  const files = (await readdir(path.join(SRC, "toolkit"))).filter((name) => name.endsWith(".ts"));
  t.true(files.length >= 5, "the scan finds the toolkit");
  const imports = await importsOf("toolkit");
  for (const { file, spec } of imports) {
    t.true(!spec.startsWith("../") || spec === "../errors.js", `${file} imports ${spec}`);
    t.not(spec, "zeromq", `${file} imports ${spec}`);
  }
});
