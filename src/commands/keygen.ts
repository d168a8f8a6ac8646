import { F2bzError, quote } from "../errors.js";
import { findAccount } from "../keys/accounts.js";
import { writeIdentity } from "../keys/files.js";
import { fingerprint, generateIdentity } from "../keys/identity.js";
import { checkKeyName } from "../keys/store.js";
import type { Command } from "./command.js";

export const keygen: Command = {
  name: "keygen",
  summary: "create a node identity: NAME.key (public) and NAME.key_secret (0600)",
  usage: "f2bz keygen --name NAME [--dir DIR] [--owner USER] [--force]",
  help: [
    "Writes two files in DIR (default: the current directory) in CZMQ's ZPL certificate format:",
    "  NAME.key         public: CURVE public key and Ed25519 verify key (mode 0644); hand it out",
    "  NAME.key_secret  secret: both key pairs (mode 0600); never leaves this host",
    "Existing files are never overwritten without --force. Prints the node id and the fingerprints",
    "to compare out of band when the public file is copied to the publisher.",
    "--owner USER (as root) gives the secret, and DIR when keygen creates it, to the user the daemon",
    "runs as (e.g. f2bz): a daemon refuses a secret it does not own or cannot read.",
  ],
  options: {
    name: { type: "string", short: "n" },
    dir: { type: "string", short: "d" },
    force: { type: "boolean" },
    owner: { type: "string", short: "o" },
  },
  async run(ctx) {
    const name = ctx.values.name;
    if (typeof name !== "string") throw new F2bzError("USAGE", "missing --name NAME");
    if (ctx.positionals.length > 0)
      throw new F2bzError("USAGE", `unexpected argument '${ctx.positionals[0]}'`);
    const dir = typeof ctx.values.dir === "string" ? ctx.values.dir : ".";
    const ownerName = ctx.values.owner;
    const owner = typeof ownerName === "string" ? findAccount(ownerName) : undefined;
    if (typeof ownerName === "string" && !owner) {
      throw new F2bzError("USER_UNKNOWN", `user ${quote(ownerName)} does not exist in '/etc/passwd'`);
    }
    const identity = await generateIdentity(checkKeyName(name));
    const written = await writeIdentity(dir, identity, ctx.values.force === true, owner);
    const ownedBy = owner ? `, owned by ${owner.name}` : "";
    ctx.stdout(
      `wrote ${written.publicFile} (public, 0644) and ${written.secretFile} (secret, 0600${ownedBy})`,
    );
    ctx.stdout(`node id:           ${identity.nodeId}`);
    ctx.stdout(`curve fingerprint: ${fingerprint(identity.curvePublic)}`);
    ctx.stdout(`sign fingerprint:  ${fingerprint(identity.signPublic)}`);
    return 0;
  },
};
