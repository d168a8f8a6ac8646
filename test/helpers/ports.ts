import net from "node:net";

/**
 * Loopback ports for configs that need a concrete port before anything binds it (a monitor started
 * before its publisher, a restart on the same port). They come from 20000–31999, below the kernel's
 * ephemeral range (32768+), where outgoing connections and `tcp://127.0.0.1:*` binds of concurrent
 * tests take their ports; each test process (ava runs one per file) draws from its own block of
 * 100, in order, and skips a port something listens on.
 */
const BLOCKS = 120;
const BLOCK = 100;
let next = 0;

export async function freePort(): Promise<number> {
  const base = 20_000 + (process.pid % BLOCKS) * BLOCK;
  for (let tries = 0; tries < BLOCK; tries++) {
    const port = base + (next++ % BLOCK);
    if (await canListen(port)) return port;
  }
  throw new Error(`no free loopback port in ${base}-${base + BLOCK - 1}`);
}

export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  return ports;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}
