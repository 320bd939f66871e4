/**
 * KvmTracer: the one lifecycle of kvm-trace's BPF side, libbpf-tools style:
 *   preflight (libbpf, root, BTF) → pick strategy (feature probes) → tracefs → open the prebuilt object →
 *   set rodata filters and map sizes → autoload only the chosen programs → load → fill the pids and
 *   flex_arrays maps (the latter from the kernel's BTF: which arguments' flexible-array entries to read) →
 *   attach → (the ring-buffer consumer runs elsewhere, on ringMapFd) → close(): destroy every link, close
 *   the object. close() is idempotent; a failure anywhere in open() tears down what was built; a process
 *   'exit' hook closes tracers left open (the kernel would free them with the fds anyway: nothing is pinned).
 * openAsync() is the same with the load on a worker thread (the caller builds its decoder meanwhile).
 * The steps live beside it: tracer-open.ts (what comes before and after the load), strategy.ts (preflight,
 * strategy choice), object-setup.ts (options, rodata, autoload, map sizes and contents), load.ts (load,
 * retried without a hook program the kernel refuses), hooks.ts (copy hooks attached one by one, each with
 * its result), load-errors.ts (one-line failures).
 */
import { readFileSync } from 'node:fs';
import {
  type BpfLinkPtr,
  type BpfMapPtr,
  type BpfObjectPtr,
  bpfObjectId,
  closeObject,
  destroyLink,
  destroyLinkAsync,
  linkFd,
  mapFd,
  mapLookup,
  numPossibleCpus,
  objectMaps,
  objectPrograms,
  programFd,
  programName,
  setLibbpfLogger,
} from '../ffi/libbpf.js';
import { readStats, type TracerStats } from './stats.js';
import { type AggregateMaps, type KernelAggregate, readAggregate } from './aggregate.js';
import type { HookResult } from './hooks.js';
import type { HwAttach } from './hw-exits.js';
import { loadQuietAsync, loadWithRetry } from './load.js';
import type { Strategy } from './programs.js';
import { type AttachedObject, attachLoaded, planOpen, type TracerOptions } from './tracer-open.js';

export { BpfLoadError } from './load-errors.js';
export type { HookResult } from './hooks.js';
export type { HwAttach } from './hw-exits.js';
export type { TracerStats } from './stats.js';
export { chooseStrategy } from './strategy.js';
export { DEFAULT_RING_BYTES, type TracerOptions } from './tracer-open.js';

/** Kernel ids of everything the tracer holds: compare with kernelBpfIds() to prove teardown. */
export interface BpfIds {
  progs: number[];
  maps: number[];
  links: number[];
}

/** Per-program run counters from /proc/self/fdinfo (non-zero only while kernel.bpf_stats_enabled=1). */
export interface ProgramRuntime {
  name: string;
  runCount: number;
  runTimeNs: number;
}

const openTracers = new Set<KvmTracer>();
let exitHookInstalled = false;

export class KvmTracer {
  readonly strategy: Strategy;
  /** Why this strategy: the feature probes' answers. */
  readonly reason: string;
  /** Names of the attached programs. */
  readonly programs: string[];
  /** Per copy hook: attached (which program) or not, and why. */
  readonly hooks: HookResult[];
  /** The ring buffer map's fd, for the consumer (mmap it; see HOST.md). */
  readonly ringMapFd: number;
  readonly ringBytes: number;
  /** The ioctls whose flexible-array entries are captured (the flex_arrays map), by name. */
  readonly flexArrays: string[];
  /** The hardware-exit hook set: attached or not, and why. */
  readonly hwExits: HwAttach;

  #obj: BpfObjectPtr | null;
  #links: BpfLinkPtr[];
  #stats: BpfMapPtr;
  #ncpu: number;
  #final: TracerStats | undefined;
  #agg: AggregateMaps;
  #aggregateOnly: boolean;
  #finalAgg: KernelAggregate | undefined;

  private constructor(init: AttachedObject) {
    this.#obj = init.obj;
    this.#links = init.links;
    this.strategy = init.strategy;
    this.reason = init.reason;
    this.programs = init.programs;
    this.hooks = init.hooks;
    this.ringMapFd = init.ringMapFd;
    this.ringBytes = init.ringBytes;
    this.#stats = init.stats;
    this.flexArrays = init.flexArrays;
    this.#agg = init.agg;
    this.#aggregateOnly = init.aggregateOnly;
    this.hwExits = init.hwExits;
    this.#ncpu = numPossibleCpus();
  }

  /** True when opened with `aggregate`: counters in the kernel, no ioctl records. */
  get aggregateOnly(): boolean {
    return this.#aggregateOnly;
  }

  /** Load and attach. Throws NotSupportedError / SyscallError / BpfLoadError / RangeError with one clear line. */
  static open(opts: TracerOptions = {}): KvmTracer {
    const p = planOpen(opts);
    try {
      return KvmTracer.#create(attachLoaded(p, loadWithRetry(p.path, p.plan, p.wanted, p.libbpfLog, p.log, p.configure)));
    } finally {
      setLibbpfLogger(null);
    }
  }

  /**
   * open(), with bpf_object__load on a worker thread: everything before the load runs before this returns
   * its promise, so the caller can build what it needs next (the decoder) while the kernel verifies the
   * programs. A failed quiet load is done again by open()'s path, with libbpf's log (and --verbose loads
   * that way from the start, its log shown as it comes).
   */
  static async openAsync(opts: TracerOptions = {}): Promise<KvmTracer> {
    const p = planOpen(opts);
    try {
      const quiet = opts.verbose ? undefined : await loadQuietAsync(p.path, p.wanted(), p.configure);
      const loaded = quiet ?? loadWithRetry(p.path, p.plan, p.wanted, p.libbpfLog, p.log, p.configure);
      return KvmTracer.#create(attachLoaded(p, loaded));
    } finally {
      setLibbpfLogger(null);
    }
  }

  static #create(init: AttachedObject): KvmTracer {
    const tracer = new KvmTracer(init);
    registerOpen(tracer);
    return tracer;
  }

  get closed(): boolean {
    return this.#obj === null;
  }

  /** Sum over CPUs of the kernel-side counters (enum kt_stat); after close(), their final values. */
  stats(): TracerStats {
    if (!this.#obj) {
      if (!this.#final) throw new Error('KvmTracer closed before its counters could be read');
      return { ...this.#final };
    }
    return readStats(this.#stats, this.#ncpu);
  }

  /**
   * The kernel's counters summed over CPUs (aggregate mode: everything; a full capture with hardware exits:
   * those); after close(), their final values (read once the programs were detached).
   */
  aggregate(): KernelAggregate {
    if (!this.#obj) {
      if (!this.#finalAgg) throw new Error('KvmTracer closed before its aggregate counters could be read');
      return this.#finalAgg;
    }
    return readAggregate(this.#agg, this.#ncpu);
  }

  /** Kernel ids of our loaded programs, created maps and attached links. */
  ids(): BpfIds {
    if (!this.#obj) return { progs: [], maps: [], links: [] };
    const progs = objectPrograms(this.#obj)
      .map(programFd)
      .filter((fd) => fd >= 0)
      .map(bpfObjectId);
    const maps = objectMaps(this.#obj)
      .map(mapFd)
      .filter((fd) => fd >= 0)
      .map(bpfObjectId);
    const links = this.#links.map(linkFd).filter((fd) => fd >= 0).map(bpfObjectId);
    return { progs, maps, links };
  }

  /**
   * How often each attached program ran and for how long in total, as the kernel counts it (fdinfo
   * run_cnt / run_time_ns). The kernel only counts while the sysctl kernel.bpf_stats_enabled is 1.
   */
  programRuntime(): ProgramRuntime[] {
    if (!this.#obj) return [];
    const out: ProgramRuntime[] = [];
    for (const prog of objectPrograms(this.#obj)) {
      const name = programName(prog);
      const fd = programFd(prog);
      if (fd < 0 || !this.programs.includes(name)) continue;
      const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
      const field = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)$`, 'm').exec(info)?.[1] ?? 0);
      out.push({ name, runCount: field('run_cnt'), runTimeNs: field('run_time_ns') });
    }
    return out;
  }

  /**
   * close(), with the links destroyed a few at a time on libuv's pool: each detach waits for RCU grace
   * periods in the kernel, and overlapping them shortens the whole. Programs may run until it settles. Safe to call more than once; close() may follow (and does nothing more).
   */
  async detach(): Promise<void> {
    if (!this.#obj) return;
    const links = this.#links;
    this.#links = [];
    // Three at a time: the kernel serializes most of each destroy's wait anyway (16 links: 0.70 s one per
    // pool thread on 4, 0.52 s on 32), and libuv's pool (4 threads unless UV_THREADPOOL_SIZE says otherwise,
    // fixed before any of our code runs) must keep threads for the caller's file writes — the summary —
    // which otherwise waited for the whole detach.
    const width = 3;
    const next = (): Promise<void> => {
      const link = links.shift();
      return link === undefined ? Promise.resolve() : destroyLinkAsync(link).then(next, next);
    };
    await Promise.all(Array.from({ length: Math.min(width, links.length) }, next));
    this.close();
  }

  /** Detach every program and free the object. Safe to call more than once and from any path. */
  close(): void {
    const obj = this.#obj;
    if (!obj) return;
    // Detach first so the counters stop moving, then keep their final values for stats().
    const links = this.#links;
    this.#links = [];
    for (const link of links.reverse()) destroyLink(link);
    try {
      this.#final = this.stats();
      if (this.#aggregateOnly || this.hwExits.requested) this.#finalAgg = this.aggregate();
    } finally {
      this.#obj = null;
      openTracers.delete(this);
      closeObject(obj);
    }
  }
}

function registerOpen(t: KvmTracer): void {
  openTracers.add(t);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const tracer of [...openTracers]) tracer.close();
  });
}
