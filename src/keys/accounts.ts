import { readFileSync } from "node:fs";

/**
 * Local accounts, from /etc/passwd as useradd and systemd-sysusers write them (the same source as
 * the ban-helper's group lookup): the daemon's user is a local system user.
 */
export interface Account {
  name: string;
  uid: number;
  gid: number;
}

function accounts(file: string): Account[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  const out: Account[] = [];
  for (const line of text.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (!name || !uid || !gid || !/^\d{1,10}$/.test(uid) || !/^\d{1,10}$/.test(gid)) continue;
    out.push({ name, uid: Number(uid), gid: Number(gid) });
  }
  return out;
}

/** A user name, or a numeric uid that has an account (its gid comes from there). */
export function findAccount(user: string, file = "/etc/passwd"): Account | undefined {
  const all = accounts(file);
  return (
    all.find((a) => a.name === user) ??
    (/^\d{1,10}$/.test(user) ? accountOfUid(Number(user), file) : undefined)
  );
}

export function accountOfUid(uid: number, file = "/etc/passwd"): Account | undefined {
  return accounts(file).find((a) => a.uid === uid);
}

/** For messages: "f2bz (uid 999)", or "uid 999" when the uid has no account. */
export function describeUid(uid: number, file = "/etc/passwd"): string {
  const account = accountOfUid(uid, file);
  return account ? `${account.name} (uid ${uid})` : `uid ${uid}`;
}
