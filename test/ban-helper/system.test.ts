import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { resolveGroup, systemdListenFd } from "../../src/ban-helper/system.js";
import { F2bzError } from "../../src/errors.js";
import { tempDir } from "../helpers/temp-dir.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

test("socket activation: fd 3 only when LISTEN_PID is this process and LISTEN_FDS is 1", (t) => {
  t.is(systemdListenFd({}, 42), undefined);
  t.is(systemdListenFd({ LISTEN_PID: "42", LISTEN_FDS: "1" }, 42), 3);
  t.is(systemdListenFd({ LISTEN_PID: "41", LISTEN_FDS: "1" }, 42), undefined, "meant for another process");
  t.is(systemdListenFd({ LISTEN_FDS: "1" }, 42), undefined);
  const error = t.throws(() => systemdListenFd({ LISTEN_PID: "42", LISTEN_FDS: "2" }, 42), {
    instanceOf: F2bzError,
  });
  t.is(error.code, "CONFIG_INVALID");
});

test("a group is a name from the group file or a numeric gid", async (t) => {
  const dir = await tempDir(t, "f2bz-group-");
  const file = path.join(dir, "group");
  await fs.writeFile(file, "root:x:0:\nadm:x:4:syslog\nf2bz:x:998:\n");
  t.is(await resolveGroup("f2bz", file), 998);
  t.is(await resolveGroup("adm", file), 4);
  t.is(await resolveGroup("1234", file), 1234);
  const error = await t.throwsAsync(resolveGroup("f2b", file), { instanceOf: F2bzError });
  t.is(error.message, `group 'f2b' does not exist in '${file}'`);
});

/**
 * DESIGN §10: the root ban-helper carries no network code. Follows the static imports from the
 * helper's entry points and fails on anything under transport/ or protocol/, or on zeromq.
 */
test("the ban-helper's modules import neither transport nor protocol nor zeromq", async (t) => {
  const seen = new Set<string>();
  const external = new Set<string>();
  const visit = async (file: string): Promise<void> => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = await fs.readFile(file, "utf8");
    for (const m of text.matchAll(
      /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g,
    )) {
      const spec = (m[1] ?? m[2])!;
      if (spec.startsWith(".")) await visit(path.resolve(path.dirname(file), spec.replace(/\.js$/, ".ts")));
      else external.add(spec);
    }
  };
  for (const entry of [
    "src/commands/ban-helper.ts",
    "src/ban-helper/server.ts",
    "src/fail2ban/helper-client.ts",
  ]) {
    await visit(path.join(root, entry));
  }
  const modules = [...seen].map((f) => path.relative(root, f));
  t.true(modules.includes("src/fail2ban/client.ts"), "the walk follows the imports");
  t.deepEqual(
    modules.filter((m) => /^src\/(transport|protocol|publisher|subscriber|monitor)\//.test(m)),
    [],
  );
  t.false(external.has("zeromq"));
});
