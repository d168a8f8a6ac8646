/**
 * Re-implementations of how two other ZeroMQ certificate stores read a certificate, to show that
 * f2bz's files stay readable by them. Written from their sources, not from our parser:
 *   pyzmq  zmq/auth/certs.py load_certificate()
 *   CZMQ   src/zconfig.c zconfig_chunk_load(), zconfig_locate(); src/zcert.c zcert_load()
 */

/** pyzmq: scans lines, takes the text after the first '=' of a `public-key`/`secret-key` line. */
export function pyzmqLoadCertificate(text: string): { publicKey: string; secretKey: string | undefined } {
  let publicKey: string | undefined;
  let secretKey: string | undefined;
  const strip = (value: string) => value.replace(/^[ \t'"]+|[ \t'"]+$/g, "");
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#")) continue;
    if (line.startsWith("public-key")) publicKey = strip(line.split("=").slice(1).join("="));
    if (line.startsWith("secret-key")) secretKey = strip(line.split("=").slice(1).join("="));
    if (publicKey && secretKey) break;
  }
  if (publicKey === undefined) throw new Error("No public key found");
  return { publicKey, secretKey };
}

interface ZconfigNode {
  name: string;
  value: string;
  children: ZconfigNode[];
}

const isNameChar = (c: string | undefined) => c !== undefined && /[A-Za-z0-9$\-_@.&+/]/.test(c);

/** CZMQ: parses ZPL into a tree; returns undefined where zconfig_chunk_load returns NULL. */
export function czmqLoad(text: string): ZconfigNode | undefined {
  const root: ZconfigNode = { name: "root", value: "", children: [] };
  for (const rawLine of text.split("\n")) {
    const line = rawLine.replace(/\s+$/, "");
    let at = 0;
    while (line[at] === " ") at++;
    if (at % 4 !== 0) return undefined;
    const level = at / 4;
    const nameStart = at;
    while (isNameChar(line[at])) at++;
    const name = line.slice(nameStart, at);
    if (name.startsWith("/") || name.endsWith("/")) return undefined;
    if (name === "") {
      if (!restIsComment(line.slice(at))) return undefined;
      continue;
    }
    const value = collectValue(line.slice(at));
    if (value === undefined) return undefined;
    const parent = atDepth(root, level);
    if (!parent) return undefined;
    parent.children.push({ name, value, children: [] });
  }
  return root;
}

function restIsComment(rest: string): boolean {
  const trimmed = rest.trimStart();
  return trimmed === "" || trimmed.startsWith("#");
}

function collectValue(rest: string): string | undefined {
  let text = rest.trimStart();
  if (!text.startsWith("=")) return restIsComment(text) ? "" : undefined;
  text = text.slice(1).trimStart();
  const quote = text[0];
  if (quote === '"' || quote === "'") {
    const end = text.indexOf(quote, 1);
    if (end < 0) return undefined;
    return restIsComment(text.slice(end + 1)) ? text.slice(1, end) : undefined;
  }
  const comment = text.indexOf("#");
  return (comment < 0 ? text : text.slice(0, comment)).replace(/\s+$/, "");
}

function atDepth(root: ZconfigNode, level: number): ZconfigNode | undefined {
  let node = root;
  for (let i = 0; i < level; i++) {
    const last = node.children.at(-1);
    if (!last) return undefined;
    node = last;
  }
  return node;
}

/** zconfig_get(root, path, NULL): the first child matching each segment. */
export function czmqGet(root: ZconfigNode, path: string): string | undefined {
  let node: ZconfigNode | undefined = root;
  for (const segment of path.replace(/^\//, "").split("/")) {
    node = node?.children.find((c) => c.name === segment);
  }
  return node?.value;
}

/** zcert_load: the curve keys and the metadata of a certificate. */
export function czmqLoadCertificate(text: string) {
  const root = czmqLoad(text);
  if (!root) throw new Error("zconfig could not parse the certificate");
  const publicKey = czmqGet(root, "/curve/public-key");
  if (publicKey === undefined) throw new Error("no /curve/public-key");
  const metadata = Object.fromEntries(
    (root.children.find((c) => c.name === "metadata")?.children ?? []).map((c) => [c.name, c.value]),
  );
  return { publicKey, secretKey: czmqGet(root, "/curve/secret-key"), metadata };
}
