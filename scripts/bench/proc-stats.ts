/**
 * Memory and CPU of a tracer, and the host's own load, read from the kernel (no /usr/bin/time needed):
 *  - VmHWM is the kernel's peak-RSS high-water mark, so sampling it periodically and once more just before
 *    the stop signal loses nothing but what the tracer allocates while shutting down;
 *  - CPU so far from /proc/PID/stat (10 ms ticks); a tracer's whole-life CPU — attach, records, detach and
 *    exit, every thread — from getrusage(RUSAGE_CHILDREN) read just before it is signalled and again once
 *    it has been reaped (µs resolution; the difference is exactly that child);
 *  - the host's busy cores over a second from /proc/stat, before and after a run.
 */
import { readFileSync } from 'node:fs';
import koffi from 'koffi';

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

const libc = koffi.load('libc.so.6');
const c_getrusage = libc.func('int getrusage(int who, _Out_ uint8_t *usage)');
const RUSAGE_CHILDREN = -1;
/** struct rusage: ru_utime and ru_stime (struct timeval: two longs each) first; 144 bytes on x86_64. */
const RUSAGE_SIZE = 144;

/** User + system CPU seconds of every child reaped so far (RUSAGE_CHILDREN). */
export function childrenCpuSeconds(): number {
  const b = Buffer.alloc(RUSAGE_SIZE);
  if ((c_getrusage(RUSAGE_CHILDREN, b) as number) !== 0) throw new Error('getrusage(RUSAGE_CHILDREN) failed');
  const tv = (at: number): number => Number(b.readBigInt64LE(at)) + Number(b.readBigInt64LE(at + 8)) / 1e6;
  return tv(0) + tv(16);
}

/** Busy and total jiffies of all CPUs from /proc/stat's first line. */
function cpuJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest times are inside user/nice)
  const idle = f[3] + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + (b || 0), 0);
  return { busy: total - idle, total };
}

/** How many cores were busy, on average, over the next `ms` (0 … number of cores). */
export async function busyCores(ms = 1000, cores = 1): Promise<number> {
  const a = cpuJiffies();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuJiffies();
  const total = b.total - a.total;
  return total > 0 ? ((b.busy - a.busy) / total) * cores : 0;
}
