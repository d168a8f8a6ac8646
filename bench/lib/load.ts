import { readFileSync } from "node:fs";
import os from "node:os";

/**
 * How busy the machine was with other work while a benchmark ran, in cores: machine-wide busy
 * time from /proc/stat minus this process's own CPU time. On a shared VM a figure above ~0.25
 * core means the run was disturbed and its ratios deserve a rerun. Undefined off Linux.
 */
export class ForeignLoad {
  private readonly startBusy: number | undefined;
  private readonly startOwn = process.cpuUsage();
  private readonly startTime = process.hrtime.bigint();

  constructor() {
    this.startBusy = busySeconds();
  }

  cores(): number | undefined {
    const busy = busySeconds();
    if (busy === undefined || this.startBusy === undefined) return undefined;
    const own = process.cpuUsage(this.startOwn);
    const elapsed = Number(process.hrtime.bigint() - this.startTime) / 1e9;
    const foreign = busy - this.startBusy - (own.user + own.system) / 1e6;
    return Math.max(0, foreign / elapsed);
  }
}

function busySeconds(): number | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
    // cpu  user nice system idle iowait irq softirq steal …, in clock ticks (USER_HZ, 100 on Linux)
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = fields.reduce((a, b) => a + b, 0) - (fields[3] ?? 0) - (fields[4] ?? 0);
    return busy / 100;
  } catch {
    return undefined;
  }
}

export function machine(): { cpus: number; model: string; node: string; platform: string } {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model.trim() ?? "unknown",
    node: process.version,
    platform: `${os.type()} ${os.release()}`,
  };
}
