/**
 * Memory and CPU of a running tracer, read from /proc (no /usr/bin/time needed): VmHWM is the kernel's own
 * peak-RSS high-water mark, so sampling it periodically and once more just before the stop signal loses
 * nothing but what the tracer allocates while shutting down. CPU time comes from /proc/PID/stat.
 */
import { readFileSync } from 'node:fs';

const CLK_TCK = 100; // USER_HZ on Linux x86_64

/** Peak resident set of `pid` in MiB (VmHWM), or null when it has exited. */
export function peakRssMb(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** User + system CPU seconds used so far by `pid` (all its threads), or null when it has exited. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses: fields are counted after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return Number.isFinite(utime + stime) ? (utime + stime) / CLK_TCK : null;
  } catch {
    return null;
  }
}

/** Samples a process's peak RSS every `everyMs` until stopped; keeps the highest value seen. */
export class RssSampler {
  private peak: number | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number, everyMs = 100) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
    this.sample();
  }

  sample(): void {
    const v = peakRssMb(this.pid);
    if (v !== null && (this.peak === null || v > this.peak)) this.peak = v;
  }

  /** Take a final sample (call just before signalling the process) and stop. */
  finish(): number | null {
    this.sample();
    clearInterval(this.timer);
    return this.peak;
  }
}
