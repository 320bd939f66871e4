/**
 * `top`'s data source: the kernel aggregate of `attach --aggregate` (bpf/kt_aggregate.bpf.h), read whenever a
 * snapshot is asked for — per process / VM / vCPU the KVM_RUN count, exit reasons and latency histogram, the
 * VMM handling-time histograms, and per process the other ioctls — turned into rows by
 * src/analysis/kernel-aggregate.ts. No per-call records cross to user space; the ring only carries the rare
 * fd-lifecycle records, drained and dropped (the process list comes from /proc).
 *
 * What it still cannot tell, said in `notes` rather than invented: vCPU rows have no ioctl counts of their
 * own (the kernel counts other ioctls per process); VMs created before top started are numbered by kernel
 * address, not creation order; what did not fit the kernel's maps is counted apart; hardware exits are
 * counted only with --hw-exits, and only where the kernel emits kvm:kvm_exit.
 */
import { KvmTracer, type BpfIds } from '../bpf/tracer.js';
import { mergeCounters, mergeHist, type AggCounters, type AggHist } from '../bpf/aggregate.js';
import { hwExitVerdict } from '../bpf/hw-exits.js';
import { RingBufferConsumer } from '../ringbuf/index.js';
import { hwTotals, vcpuViews } from '../analysis/kernel-aggregate.js';
import { MMIO_GRANULE } from '../analysis/exit-key.js';
import { kvmProcesses } from './procs.js';
import type { BucketCounts, TopEntity, TopProcess, TopSnapshot, TopSource } from './snapshot.js';

export interface AggregateSourceOptions {
  pids?: number[];
  comm?: string;
  log?: (line: string) => void;
  verbose?: boolean;
  /** Load the hardware-exit hooks (kvm:kvm_entry / kvm:kvm_exit). */
  hwExits?: boolean;
  /** Re-read /proc at most this often (ms); default 2000. */
  procRefreshMs?: number;
}

/** fd-lifecycle records only: a small ring is plenty. */
const RING_BYTES = 256 << 10;

const buckets = (c: { hist: number[]; maxNs: number }): BucketCounts => ({ counts: c.hist, max_ns: c.maxNs });

interface ProcessAcc {
  exits: Record<string, number>;
  ioctls: number;
  errors: number;
  run: AggCounters | undefined;
  handling: AggHist | undefined;
  hw: number;
}

export class AggregateSource implements TopSource {
  readonly description = 'kernel aggregate (per process / VM / vCPU: exits, KVM_RUN latency, VMM handling time; ioctls per process)';
  #tracer: KvmTracer | null;
  #consumer: RingBufferConsumer | null;
  #procs: TopProcess[] = [];
  #procsAt = -Infinity;
  readonly #opts: AggregateSourceOptions;

  private constructor(tracer: KvmTracer, consumer: RingBufferConsumer, opts: AggregateSourceOptions) {
    this.#tracer = tracer;
    this.#consumer = consumer;
    this.#opts = opts;
  }

  /** Load and attach the aggregate programs (throws the tracer's one-line errors). */
  static open(opts: AggregateSourceOptions = {}): AggregateSource {
    const tracer = KvmTracer.open({
      pids: opts.pids,
      comm: opts.comm,
      aggregate: true,
      hwExits: opts.hwExits,
      ringBytes: RING_BYTES,
      log: opts.log,
      verbose: opts.verbose,
    });
    try {
      const consumer = new RingBufferConsumer(tracer.ringMapFd, tracer.ringBytes, { onRecord: () => {}, intervalMs: 500, ref: false });
      return new AggregateSource(tracer, consumer, opts);
    } catch (err) {
      tracer.close();
      throw err;
    }
  }

  get strategy(): string {
    return this.#tracer?.strategy ?? 'closed';
  }

  ids(): BpfIds {
    return this.#tracer?.ids() ?? { progs: [], maps: [], links: [] };
  }

  private processes(now: number): TopProcess[] {
    if (now - this.#procsAt >= (this.#opts.procRefreshMs ?? 2000)) {
      this.#procs = kvmProcesses({ pids: this.#opts.pids, comm: this.#opts.comm });
      this.#procsAt = now;
    }
    return this.#procs;
  }

  snapshot(): TopSnapshot {
    const tracer = this.#tracer;
    if (!tracer) throw new Error('top source is closed');
    const agg = tracer.aggregate();
    const stats = tracer.stats();
    const t_ns = Number(process.hrtime.bigint());
    const processes = this.processes(t_ns / 1e6);
    const comms = new Map(processes.map((p) => [p.pid, p.comm]));
    const hw = hwExitVerdict(tracer.hwExits, hwTotals(agg).runs, hwTotals(agg).exits);
    const withHw = hw?.available === true;

    const views = vcpuViews(agg, MMIO_GRANULE);
    const procs = new Map<number, ProcessAcc>();
    const acc = (pid: number): ProcessAcc => {
      let a = procs.get(pid);
      if (!a) procs.set(pid, (a = { exits: {}, ioctls: 0, errors: 0, run: undefined, handling: undefined, hw: 0 }));
      return a;
    };
    // Every traced process has a row, with what the kernel counted for it (zero before its first ioctl).
    for (const p of processes) acc(p.pid);
    const vcpus: TopEntity[] = [];
    for (const v of views) {
      const a = acc(v.pid);
      for (const [r, n] of Object.entries(v.exits)) a.exits[r] = (a.exits[r] ?? 0) + n;
      a.ioctls += v.run.count;
      a.errors += v.run.errors;
      a.run = a.run ? mergeCounters(a.run, v.run) : v.run;
      a.hw += v.hw.exits;
      if (v.handlingTotal.count) a.handling = a.handling ? mergeHist(a.handling, v.handlingTotal) : v.handlingTotal;
      if (v.vcpu === null) continue; // KVM_RUN on an fd the kernel side could not resolve: in the process row only
      const e: TopEntity = { pid: v.pid, vm: v.vm, vcpu: v.vcpu, exits: v.exits, run_latency: buckets(v.run) };
      const comm = comms.get(v.pid);
      if (comm !== undefined) e.comm = comm;
      if (v.handlingTotal.count) e.handling = buckets(v.handlingTotal);
      if (withHw) e.hw_exits = v.hw.exits;
      vcpus.push(e);
    }
    for (const [pid, per] of agg.ioctls) {
      const a = acc(pid);
      for (const c of per.values()) {
        a.ioctls += c.count;
        a.errors += c.errors;
      }
    }
    const heads: TopEntity[] = [...procs].map(([pid, a]) => {
      const e: TopEntity = { pid, vm: null, vcpu: null, exits: a.exits, ioctls: a.ioctls, errors: a.errors };
      const comm = comms.get(pid);
      if (comm !== undefined) e.comm = comm;
      if (a.run) e.run_latency = buckets(a.run);
      if (a.handling) e.handling = buckets(a.handling);
      if (withHw) e.hw_exits = a.hw;
      return e;
    });

    const notes: string[] = [];
    if (hw && !hw.available) notes.push(hw.statement);
    for (const p of processes) if (p.vms > 1) notes.push(`pid ${p.pid} has ${p.vms} VMs: the VM column numbers them (those created before top started by kernel address)`);
    const over = stats.vcpuOverflow + stats.ioctlOverflow + stats.handlingOverflow + stats.handlingFolded;
    if (over > 0) notes.push(`kernel maps full: ${over} counts kept in overflow entries (not in any row)`);
    return { t_ns, entities: [...heads, ...vcpus], processes, lost: stats.lost, notes };
  }

  /** Stop reading the ring, then detach every link side by side (tracer.detach(): one RCU wait, not seven). */
  async close(): Promise<void> {
    const consumer = this.#consumer;
    const tracer = this.#tracer;
    this.#consumer = null;
    this.#tracer = null;
    try {
      consumer?.close();
    } finally {
      await tracer?.detach();
    }
  }
}
