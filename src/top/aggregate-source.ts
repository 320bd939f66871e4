/**
 * `top`'s data source today: the kernel aggregate of `attach --aggregate` (bpf/kvm_trace.bpf.c agg_* maps:
 * per request count/errors/latency histogram, KVM_RUN's in its own slot; exit reasons per vCPU id), read
 * whenever a snapshot is asked for. No per-call records cross to user space; the ring only carries the rare
 * fd-lifecycle records, drained and dropped (the process list comes from /proc).
 *
 * What this aggregate cannot tell, and the snapshot says so in `notes` instead of inventing it:
 * - it keys vCPUs by id alone, so with more than one traced process the vCPU rows and totals are summed
 *   over all of them (pid null, shown as "*"); with exactly one -p pid they are that process's;
 * - two VMs of one process with the same vCPU id share a row;
 * - KVM_RUN latency is one histogram for all vCPUs (on the process row), and VMM handling time is not kept
 *   in the kernel yet (a full capture measures it: attach -o FILE, then report).
 */
import { KvmTracer, type BpfIds } from '../bpf/tracer.js';
import { AGG_REASON_CAP, AGG_VCPU_CAP, type AggCounters } from '../bpf/aggregate.js';
import { RingBufferConsumer } from '../ringbuf/index.js';
import { exitReasonName, ioctlByName } from '../kvm/abi/ioctl-table.js';
import { kvmProcesses } from './procs.js';
import type { TopEntity, TopProcess, TopSnapshot, TopSource } from './snapshot.js';

export interface AggregateSourceOptions {
  pids?: number[];
  comm?: string;
  log?: (line: string) => void;
  verbose?: boolean;
  /** Re-read /proc at most this often (ms); default 2000. */
  procRefreshMs?: number;
}

const KVM_RUN_CMD = ioctlByName('KVM_RUN').cmd;
/** fd-lifecycle records only: a small ring is plenty. */
const RING_BYTES = 256 << 10;

export class AggregateSource implements TopSource {
  readonly description = 'kernel aggregate (exit reasons per vCPU id; ioctl counters and KVM_RUN latency per traced set)';
  #tracer: KvmTracer | null;
  #consumer: RingBufferConsumer | null;
  #procs: TopProcess[] = [];
  #procsAt = -Infinity;
  readonly #opts: AggregateSourceOptions;
  readonly #single: number | null;

  private constructor(tracer: KvmTracer, consumer: RingBufferConsumer, opts: AggregateSourceOptions) {
    this.#tracer = tracer;
    this.#consumer = consumer;
    this.#opts = opts;
    this.#single = opts.pids?.length === 1 ? opts.pids[0] : null;
  }

  /** Load and attach the aggregate programs (throws the tracer's one-line errors). */
  static open(opts: AggregateSourceOptions = {}): AggregateSource {
    const tracer = KvmTracer.open({ pids: opts.pids, comm: opts.comm, aggregate: true, ringBytes: RING_BYTES, log: opts.log, verbose: opts.verbose });
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
    const lost = tracer.stats().lost;
    const t_ns = Number(process.hrtime.bigint());
    const processes = this.processes(t_ns / 1e6);
    const pid = this.#single;
    const comm = pid === null ? undefined : processes.find((p) => p.pid === pid)?.comm;

    const vcpus: TopEntity[] = [];
    const all: Record<string, number> = {};
    for (const [slot, reasons] of [...agg.exits].sort((a, b) => a[0] - b[0])) {
      const exits: Record<string, number> = {};
      for (const [r, n] of reasons) {
        const name = r === AGG_REASON_CAP ? `${exitReasonName(r)}+` : exitReasonName(r);
        exits[name] = (exits[name] ?? 0) + n;
        all[name] = (all[name] ?? 0) + n;
      }
      const e: TopEntity = { pid, vm: null, vcpu: slot, exits };
      if (comm !== undefined) e.comm = comm;
      if (slot === AGG_VCPU_CAP) e.vcpu_label = `${slot}+`;
      vcpus.push(e);
    }
    let ioctls = 0;
    let errors = 0;
    const counted: AggCounters[] = [...agg.ioctls.values(), ...(agg.overflow ? [agg.overflow] : [])];
    for (const c of counted) {
      ioctls += c.count;
      errors += c.errors;
    }
    const total: TopEntity = { pid, vm: null, vcpu: null, exits: all, ioctls, errors };
    if (comm !== undefined) total.comm = comm;
    const run = agg.ioctls.get(KVM_RUN_CMD);
    if (run) total.run_latency = { counts: run.hist, max_ns: run.maxNs };

    const notes: string[] = [];
    if (pid === null) notes.push('the kernel aggregate keys vCPUs by id alone: rows are summed over every traced process (pid *); -p PID shows one process');
    for (const p of processes) if (p.vms > 1) notes.push(`pid ${p.pid} has ${p.vms} VMs: vCPUs with the same id share a row`);
    notes.push('VMM handling time is not kept in the kernel yet: attach -o FILE and report measure it per vCPU');
    return { t_ns, entities: [total, ...vcpus], processes, lost, notes };
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
