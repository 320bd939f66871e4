/**
 * Folds KVM_RUN records into per-vCPU windows (the "aggregate" run-span mode, see options.ts for the rule).
 * Pure bookkeeping with no OpenTelemetry in it, so the rule is unit-testable: the span builder turns each
 * closed window into one "KVM_RUN" span.
 */
import type { BufferFlag, IoctlRecord } from '../../decode/records.js';
import { enterOf } from './record-time.js';

export interface RunWindow {
  /** "pid/vm/vcpu" */
  key: string;
  pid: number;
  vm: number | null;
  vcpu: number;
  fd: number;
  tid: number;
  comm: string;
  cmd: string;
  firstEnterNs: number;
  lastExitNs: number;
  count: number;
  errors: number;
  latencyMinNs: number;
  latencyMaxNs: number;
  latencySumNs: number;
  /** Runs with a known latency (entry seen). */
  timed: number;
  /** exit reason -> count (successful runs with exit info). */
  exits: Map<string, number>;
  /** errno -> count (failed runs). */
  errnos: Map<string, number>;
  /** The first few buffer flags seen in the window (KVM_RUN passes no buffer, so this is normally empty). */
  flags: BufferFlag[];
  flagged: number;
  /** Date.now() of the last run added, for the idle timer. */
  lastWallMs: number;
}

export const MAX_FLAGS_PER_WINDOW = 8;

export function runKey(pid: number, vm: number | null, vcpu: number | null): string {
  return `${pid}/${vm ?? '-'}/${vcpu ?? '-'}`;
}

export class RunAggregator {
  private readonly open = new Map<string, RunWindow>();
  private readonly windowNs: number;

  constructor(
    readonly windowMs: number,
    private readonly emit: (w: RunWindow) => void,
    private readonly wallNow: () => number = Date.now,
  ) {
    this.windowNs = windowMs * 1e6;
  }

  /** Add one KVM_RUN record; closes (emits) the vCPU's current window first when the run lies past it. */
  add(r: IoctlRecord): void {
    const key = runKey(r.pid, r.vm, r.vcpu);
    const enter = enterOf(r);
    let w = this.open.get(key);
    if (w && enter >= w.firstEnterNs + this.windowNs) {
      this.open.delete(key);
      this.emit(w);
      w = undefined;
    }
    if (!w) {
      w = {
        key,
        pid: r.pid,
        vm: r.vm,
        vcpu: r.vcpu ?? -1,
        fd: r.fd,
        tid: r.tid,
        comm: r.comm,
        cmd: r.cmd,
        firstEnterNs: enter,
        lastExitNs: r.ts_ns,
        count: 0,
        errors: 0,
        latencyMinNs: Number.POSITIVE_INFINITY,
        latencyMaxNs: 0,
        latencySumNs: 0,
        timed: 0,
        exits: new Map(),
        errnos: new Map(),
        flags: [],
        flagged: 0,
        lastWallMs: 0,
      };
      this.open.set(key, w);
    }
    w.count++;
    w.tid = r.tid;
    w.comm = r.comm;
    if (enter < w.firstEnterNs) w.firstEnterNs = enter;
    if (r.ts_ns > w.lastExitNs) w.lastExitNs = r.ts_ns;
    // A run without its entry has no latency: it counts, but not in min/max/sum (`timed` counts those that do).
    if (!r.no_enter && r.enter_ns > 0) {
      const lat = r.latency_ns;
      if (lat < w.latencyMinNs) w.latencyMinNs = lat;
      if (lat > w.latencyMaxNs) w.latencyMaxNs = lat;
      w.latencySumNs += lat;
      w.timed++;
    }
    if (r.errno) {
      w.errors++;
      w.errnos.set(r.errno, (w.errnos.get(r.errno) ?? 0) + 1);
    } else if (r.exit) {
      w.exits.set(r.exit.reason, (w.exits.get(r.exit.reason) ?? 0) + 1);
    }
    if (r.flags) {
      for (const f of r.flags) {
        if (!f.misaligned && !f.cacheline_cross) continue;
        w.flagged++;
        if (w.flags.length < MAX_FLAGS_PER_WINDOW) w.flags.push(f);
      }
    }
    w.lastWallMs = this.wallNow();
  }

  /** Close the window of one vCPU (its fd closed). */
  flushVcpu(pid: number, vm: number | null, vcpu: number | null): void {
    const key = runKey(pid, vm, vcpu);
    const w = this.open.get(key);
    if (!w) return;
    this.open.delete(key);
    this.emit(w);
  }

  /** Close windows whose vCPU has not run for windowMs of wall time (so a live view is not held back). */
  flushIdle(): void {
    const limit = this.wallNow() - this.windowMs;
    for (const [key, w] of this.open) {
      if (w.lastWallMs <= limit) {
        this.open.delete(key);
        this.emit(w);
      }
    }
  }

  flushAll(): void {
    const all = [...this.open.values()];
    this.open.clear();
    for (const w of all) this.emit(w);
  }

  get openWindows(): number {
    return this.open.size;
  }
}
