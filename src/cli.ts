import { parseArgs } from "node:util";
import type { Command, CommandContext } from "./commands/command.js";
import { commands } from "./commands/index.js";
import { exitCodeFor, F2bzError, quote } from "./errors.js";

/** The composition root: the only place that reads argv, signals and the terminal. */
export async function main(argv: string[]): Promise<number> {
  const stdout = (line: string) => process.stdout.write(`${line}\n`);
  const stderr = (line: string) => process.stderr.write(`${line}\n`);
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    stdout(overview());
    return name === undefined ? 64 : 0;
  }
  if (name === "--version" || name === "-V") {
    stdout(await version());
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    stderr(
      `f2bz: unknown command ${quote(name)}, expected one of: ${commands.map((c) => c.name).join(", ")}`,
    );
    return 64;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    stdout(commandHelp(command));
    return 0;
  }
  const controller = new AbortController();
  const stop = () => controller.abort();
  const hangupListeners: (() => void)[] = [];
  const hangup = () => {
    for (const listener of hangupListeners) listener();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  process.on("SIGHUP", hangup);
  try {
    const parsed = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true });
    const ctx: CommandContext = {
      positionals: parsed.positionals,
      values: parsed.values as CommandContext["values"],
      stdout,
      stderr,
      signal: controller.signal,
      onHangup: (listener) => hangupListeners.push(listener),
      tty: process.stdout.isTTY === true,
      env: process.env,
    };
    return await command.run(ctx);
  } catch (error) {
    if (error instanceof F2bzError) {
      stderr(`f2bz ${command.name}: ${error.message}`);
    } else if (isSystemError(error)) {
      // A file the operator pointed at is missing, unwritable or of the wrong kind: not a bug in f2bz.
      const io = new F2bzError("IO_FAILED", systemErrorMessage(error));
      stderr(`f2bz ${command.name}: ${io.message}`);
      return exitCodeFor(io);
    } else if (isParseArgsError(error)) {
      stderr(`f2bz ${command.name}: ${firstSentence(error.message)} (see 'f2bz ${command.name} --help')`);
      return 64;
    } else {
      stderr(`f2bz ${command.name}: internal error: ${(error as Error)?.stack ?? String(error)}`);
    }
    return exitCodeFor(error);
  } finally {
    process.off("SIGTERM", stop);
    process.off("SIGINT", stop);
    process.off("SIGHUP", hangup);
  }
}

function isParseArgsError(error: unknown): error is Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" && code.startsWith("ERR_PARSE_ARGS");
}

function isSystemError(error: unknown): error is NodeJS.ErrnoException & { syscall: string } {
  const e = error as NodeJS.ErrnoException | undefined;
  return typeof e?.code === "string" && /^E[A-Z]+$/.test(e.code) && typeof e.syscall === "string";
}

function systemErrorMessage(error: NodeJS.ErrnoException & { syscall: string }): string {
  const reason = error.message.replace(/^[A-Z]+: /, "").replace(/, \w+ .*$/, "");
  const target = error.path === undefined ? "" : ` ${quote(error.path)}`;
  return `${error.syscall}${target} failed: ${error.code} (${reason})`;
}

/** node's parseArgs explains at length ("To specify a positional argument…"); one sentence is enough. */
function firstSentence(message: string): string {
  const line = message.split("\n")[0]!;
  const sentence = /^(.*?)\.(?:\s|$)/.exec(line)?.[1] ?? line;
  return sentence.replace(/^./, (c) => c.toLowerCase());
}

function overview(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "f2bz: a security-hardened cluster layer for fail2ban (ZeroMQ CURVE, signed events)",
    "",
    "usage: f2bz <command> [options]      f2bz <command> --help",
    "",
    "commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "The config file defaults to /etc/f2bz/f2bz.yaml (--config FILE to change).",
  ].join("\n");
}

function commandHelp(command: Command): string {
  return [
    `usage: ${command.usage}`,
    "",
    command.summary,
    ...(command.help.length ? ["", ...command.help] : []),
  ].join("\n");
}

async function version(): Promise<string> {
  const { readFile } = await import("node:fs/promises");
  const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return `f2bz ${pkg.version}`;
}
