import { promises as fs } from "node:fs";
import path from "node:path";
import { DEFAULT_CONFIG, loadConfig } from "../config/load.js";
import { F2bzError, quote } from "../errors.js";
import { loadPublicIdentity } from "../keys/files.js";
import { fingerprint } from "../keys/identity.js";
import { installKeyFile, type KeySource, readKeySource, readPendingSource } from "../keys/install.js";
import { writePurgeMarker } from "../keys/purge-marker.js";
import {
  checkKeyName,
  ensureLayout,
  isRevoked,
  keyHex,
  loadEntries,
  loadKeySet,
  pendingDir,
  type Role,
  revokedDir,
  roleDir,
} from "../keys/store.js";
import { parseZpl } from "../keys/zpl.js";
import { type Command, type CommandContext, configOption, configPath } from "./command.js";

async function keysDir(ctx: CommandContext): Promise<string> {
  if (typeof ctx.values.keys === "string") return ctx.values.keys;
  const file = configPath(ctx, DEFAULT_CONFIG);
  const config = await loadConfig(file);
  if (!config.publisher)
    throw new F2bzError("USAGE", `config ${quote(file)} has no 'publisher' section; use --keys DIR`);
  return config.publisher.keys;
}

function parseRole(value: string | undefined): Role {
  if (value === "monitor" || value === "subscriber") return value;
  throw new F2bzError("USAGE", `role ${quote(value ?? "")} is invalid, expected 'monitor' or 'subscriber'`);
}

async function add(ctx: CommandContext, dir: string, role: Role, source: KeySource): Promise<number> {
  const { file, identity } = source;
  const id = checkKeyName(
    typeof ctx.values.name === "string" ? ctx.values.name : path.basename(file).replace(/\.key$/, ""),
  );
  if (role === "monitor" && !identity.signPublic) {
    throw new F2bzError(
      "KEY_INVALID",
      `key file ${quote(file)} has no 'sign/verify-key', which a monitor needs to sign events`,
    );
  }
  const { set } = await loadKeySet(dir);
  if (isRevoked(set, identity)) {
    throw new F2bzError(
      "KEY_DUPLICATE",
      `key ${quote(id)} is revoked; remove it from ${quote(revokedDir(dir))} first`,
    );
  }
  const existing = role === "monitor" ? set.monitors : set.subscribers;
  for (const entry of existing) {
    if (entry.id === id)
      throw new F2bzError("KEY_DUPLICATE", `a ${role} key named ${quote(id)} is already authorized`);
    if (keyHex(entry.curvePublic) === keyHex(identity.curvePublic) || entry.nodeId === identity.nodeId) {
      throw new F2bzError("KEY_DUPLICATE", `this key is already authorized as ${role} ${quote(entry.id)}`);
    }
  }
  await ensureLayout(dir);
  await installKeyFile(path.join(roleDir(dir, role), `${id}.key`), source.bytes);
  ctx.stdout(`authorized ${role} ${id}: node ${identity.nodeId}, curve ${fingerprint(identity.curvePublic)}`);
  await warnSkipped(ctx, dir);
  return 0;
}

/**
 * Loads the directory as a running publisher does and names every entry it will skip: the
 * operator learns it here, not from a key that still works (or one that does not).
 */
async function warnSkipped(ctx: CommandContext, dir: string): Promise<void> {
  const { skipped } = await loadKeySet(dir);
  const lines = skipped.map((s) => `${path.relative(dir, s.file) || "."}: ${s.reason}`);
  if (lines.length === 1) ctx.stderr(`warning: the publisher will skip 1 entry: ${lines[0]}`);
  if (lines.length > 1) {
    ctx.stderr(`warning: the publisher will skip ${lines.length} entries:`);
    for (const line of lines) ctx.stderr(`  ${line}`);
  }
}

async function list(ctx: CommandContext, dir: string): Promise<number> {
  const { set } = await loadKeySet(dir);
  const rows: string[] = [];
  for (const [role, entries] of [
    ["monitor", set.monitors],
    ["subscriber", set.subscribers],
  ] as const) {
    for (const e of entries) {
      const state = isRevoked(set, e)
        ? "revoked"
        : role === "monitor" && !e.signPublic
          ? "no-verify-key"
          : "active";
      rows.push(
        `${role.padEnd(10)}  ${e.id.padEnd(20)}  ${state.padEnd(13)}  ${e.nodeId}  ${fingerprint(e.curvePublic)}`,
      );
    }
  }
  for (const e of set.revoked)
    rows.push(
      `${"revoked".padEnd(10)}  ${e.id.padEnd(20)}  ${"revoked".padEnd(13)}  ${e.nodeId}  ${fingerprint(e.curvePublic)}`,
    );
  if (rows.length === 0) ctx.stdout(`no keys in ${dir}`);
  for (const row of rows) ctx.stdout(row);
  return 0;
}

async function revoke(ctx: CommandContext, dir: string, name: string): Promise<number> {
  const id = checkKeyName(name);
  await ensureLayout(dir);
  let moved = 0;
  for (const role of ["monitor", "subscriber"] as const) {
    const from = path.join(roleDir(dir, role), `${id}.key`);
    try {
      await fs.access(from);
    } catch {
      continue;
    }
    const revoked = await moveToRevoked(from, dir, id);
    moved++;
    ctx.stdout(`revoked ${role} ${id}`);
    if (ctx.values["purge-bans"] === true && role === "monitor") {
      // After the move: the publisher acts on the marker only once the key no longer counts.
      const identity = await loadPublicIdentity(revoked);
      if (identity.signPublic) {
        await writePurgeMarker(revoked, { nodeId: identity.nodeId, signPublic: identity.signPublic });
        ctx.stdout(`bans of ${id} (node ${identity.nodeId}) will be lifted by a running publisher`);
      }
    }
  }
  if (moved === 0)
    throw new F2bzError("KEY_NOT_FOUND", `no authorized key named ${quote(id)} in ${quote(dir)}`);
  await warnSkipped(ctx, dir);
  return 0;
}

/**
 * Moves an authorized file into revoked/ without ever replacing a revoked file that holds another
 * key: that revocation must stay in force. The same key already revoked needs no second copy.
 */
async function moveToRevoked(from: string, dir: string, id: string): Promise<string> {
  const key = await loadPublicIdentity(from).then(
    (identity) => keyHex(identity.curvePublic),
    () => undefined,
  );
  for (let n = 1; ; n++) {
    const to = path.join(revokedDir(dir), n === 1 ? `${id}.key` : `${id}.${n}.key`);
    try {
      await fs.link(from, to);
      await fs.unlink(from);
      return to;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const existing = await loadPublicIdentity(to).catch(() => undefined);
    if (key !== undefined && existing && keyHex(existing.curvePublic) === key) {
      await fs.unlink(from);
      return to;
    }
  }
}

/** Pending files record what unknown peers sent: show them, never let them drive the terminal. */
const printable = (text: string) => text.replace(/[^\x20-\x7e]/g, "?").slice(0, 64);

async function pending(ctx: CommandContext, dir: string): Promise<number> {
  const entries = await loadEntries(pendingDir(dir));
  if (entries.length === 0) ctx.stdout("no pending keys");
  for (const e of entries) {
    const metadata = parseZpl(await fs.readFile(e.file, "utf8"));
    const meta = (key: string) => printable(metadata.get(`metadata/${key}`) ?? "?");
    ctx.stdout(
      `${e.id}  wants ${meta("role").padEnd(10)}  from ${meta("address")}  first seen ${meta("first-seen")}  ${fingerprint(e.curvePublic)}`,
    );
  }
  return 0;
}

async function accept(ctx: CommandContext, dir: string, id: string): Promise<number> {
  const file = path.join(pendingDir(dir), `${checkKeyName(id)}.key`);
  const source = await readPendingSource(pendingDir(dir), file).catch((error: unknown) => {
    if (error instanceof F2bzError && error.code === "KEY_NOT_FOUND") {
      throw new F2bzError("KEY_NOT_FOUND", `no pending key ${quote(id)} in ${quote(pendingDir(dir))}`);
    }
    throw error;
  });
  const role = parseRole(
    typeof ctx.values.role === "string" ? ctx.values.role : source.entries.get("metadata/role"),
  );
  if (role === "monitor" && !source.identity.signPublic) {
    // A handshake shows only the CURVE key; a monitor's events are checked with its verify key.
    throw new F2bzError(
      "KEY_INVALID",
      `pending key ${quote(id)} has no verify key, which a monitor needs: add the monitor's own .key file with 'f2bz keys add monitor FILE'`,
    );
  }
  const code = await add(ctx, dir, role, source);
  await fs.unlink(file);
  return code;
}

export const keys: Command = {
  name: "keys",
  summary: "manage the publisher's authorized keys: add, list, revoke, pending, accept",
  usage:
    "f2bz keys <add monitor|subscriber FILE | list | revoke NAME [--purge-bans] | pending | accept ID> [--keys DIR | --config FILE]",
  help: [
    "  add monitor|subscriber FILE  authorize a public .key file (refuses secrets, duplicates, revoked keys)",
    "  list                         every key with its role, state, node id and fingerprint",
    "  revoke NAME [--purge-bans]   move NAME to revoked/; a running publisher cuts it off within seconds",
    "                               and with --purge-bans also lifts every ban that monitor holds",
    "  pending                      unknown keys that tried to connect",
    "  accept ID [--role ROLE]      authorize a pending key (role defaults to the one it asked for)",
    "The directory is --keys DIR, or the config's publisher.keys. Layout: keys/README.md.",
  ],
  options: {
    ...configOption,
    keys: { type: "string", short: "k" },
    name: { type: "string" },
    role: { type: "string" },
    "purge-bans": { type: "boolean" },
  },
  async run(ctx) {
    const [sub, ...args] = ctx.positionals;
    const expect = (n: number, what: string) => {
      if (args.length !== n)
        throw new F2bzError("USAGE", `'keys ${sub}' takes ${what}, got ${args.length} arguments`);
    };
    switch (sub) {
      case "add":
        expect(2, "a role and a FILE");
        return add(ctx, await keysDir(ctx), parseRole(args[0]), await readKeySource(args[1]!));
      case "list":
        expect(0, "no arguments");
        return list(ctx, await keysDir(ctx));
      case "revoke":
        expect(1, "a NAME");
        return revoke(ctx, await keysDir(ctx), args[0]!);
      case "pending":
        expect(0, "no arguments");
        return pending(ctx, await keysDir(ctx));
      case "accept":
        expect(1, "an ID");
        return accept(ctx, await keysDir(ctx), args[0]!);
      default:
        throw new F2bzError(
          "USAGE",
          `unknown keys command ${quote(sub ?? "")}, expected add, list, revoke, pending or accept`,
        );
    }
  },
};
