import net from "node:net";

/**
 * Sends raw bytes to a unix socket and returns everything the peer writes until it closes.
 * `end: false` keeps the write side open (a client that never finishes its line).
 */
export function rawRequest(
  socketPath: string,
  data: string | Buffer,
  options: { end?: boolean; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let reply = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(`no close from ${socketPath} within ${options.timeoutMs ?? 10_000} ms; got '${reply}'`),
      );
    }, options.timeoutMs ?? 10_000);
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      reply += chunk;
    });
    socket.on("error", () => {}); // a reset after the answer still ends in "close"
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(reply);
    });
    socket.once("connect", () => {
      if (options.end === false) socket.write(data);
      else socket.end(data);
    });
  });
}

/** Opens a connection and resolves once connected; for clients that hold a slot. */
export function openConnection(socketPath: string): Promise<{ socket: net.Socket; reply: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      text += chunk;
    });
    socket.on("error", () => {});
    const reply = new Promise<string>((done) => socket.on("close", () => done(text)));
    socket.once("connect", () => resolve({ socket, reply }));
    socket.once("error", reject);
  });
}
