import type { ParseArgsConfig } from "node:util";

/** What cli.ts hands a command: parsed arguments, output streams and the process's stop signal. */
export interface CommandContext {
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** Fired by SIGTERM/SIGINT; daemons stop when it fires. */
  signal: AbortSignal;
  /** Fired by SIGHUP: reopen log files. */
  onHangup: (listener: () => void) => void;
  /** Whether stdout is a terminal (pretty logs, colours). */
  tty: boolean;
  /** The environment, read only where a protocol puts data there (systemd's LISTEN_FDS). */
  env: Readonly<Record<string, string | undefined>>;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** More lines of help after the usage line. */
  help: string[];
  options: NonNullable<ParseArgsConfig["options"]>;
  /** Returns the exit code; throws F2bzError for user errors. */
  run(ctx: CommandContext): Promise<number>;
}

export const configOption = { config: { type: "string", short: "c" } } as const;

export function configPath(ctx: CommandContext, fallback: string): string {
  const value = ctx.values.config;
  return typeof value === "string" ? value : fallback;
}
