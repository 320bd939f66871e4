/**
 * KvmTracer: the one lifecycle of kvm-trace's BPF side, libbpf-tools style:
 *   preflight (libbpf, root, BTF) → pick strategy (feature probes) → tracefs → open the prebuilt object →
 *   set rodata filters and map sizes → autoload only the chosen programs → load → fill the pids and
 *   flex_arrays maps (the latter from the kernel's BTF: which arguments' flexible-array entries to read) →
 *   attach → (the ring-buffer consumer runs elsewhere, on ringMapFd) → close(): destroy every link, close
 *   the object. close() is idempotent; a failure anywhere in open() tears down what was built; a process
 *   'exit' hook closes tracers left open (the kernel would free them with the fds anyway: nothing is pinned).
 * The steps live beside it: strategy.ts (preflight, strategy choice), object-setup.ts (options, rodata,
 * autoload, map sizes and contents), load.ts (load, retried without a hook program the kernel refuses),
 * hooks.ts (copy hooks attached one by one, each with its result), load-errors.ts (one-line failures).
 */
import { readFileSync } from 'node:fs';
import {
  type BpfLinkPtr,
  type BpfMapPtr,
  type BpfObjectPtr,
  attachProgram,
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
  setMapMaxEntries,
} from '../ffi/libbpf.js';
import { KT_STAT_EVENTS, KT_STAT_LOST, KT_STAT_MAX, KT_STAT_NO_ENTER, KT_STAT_STATE_UNAVAILABLE } from './event-layout.js';
import { type AggregateMaps, type KernelAggregate, prepareAggregateMaps, readAggregate } from './aggregate.js';
import { attachHooks, explicitHooks, type HookResult, hookLine, hookProgramsToLoad, planHooks } from './hooks.js';
import { type LoadedObject, loadWithRetry } from './load.js';
import { attachError } from './load-errors.js';
import {
  checkComm,
  checkPids,
  checkRingBytes,
  checkWakeupBytes,
  fillFlexArrays,
  fillPids,
  type FlexArrayPlan,
  flexArrayPlan,
  requireMap,
  writeRodata,
} from './object-setup.js';
import { prebuiltObjectPath } from './paths.js';
import { BASE_PROGRAMS, type HookFamily, type Strategy, type StrategyOption, STRATEGIES } from './programs.js';
import { chooseStrategy, preflight, rdonlyCastUsable } from './strategy.js';
import { ensureTracefs } from './tracefs.js';

export { BpfLoadError } from './load-errors.js';
export type { HookResult } from './hooks.js';
export { chooseStrategy } from './strategy.js';

export interface TracerOptions {
  /** Trace only these processes (tgids). Empty/absent: every process. */
  pids?: number[];
  /** Trace only processes whose name (thread-group leader's comm, ≤ 15 bytes) equals this. */
  comm?: string;
  /** Attach strategy; `auto` (default) picks the richest that works here. */
  strategy?: StrategyOption;
  /** Ring buffer size in bytes: a power of two ≥ 4096. Default 8 MiB. */
  ringBytes?: number;
  /** Force a consumer wakeup when unconsumed bytes cross this; 0 = never (timed drain only). Default ringBytes/4. */
  wakeupBytes?: number;
  /** Progress and diagnostics, one line each (strategy choice, tracefs mount, verifier log on failure). */
  log?: (line: string) => void;
  /** Also pass libbpf's info/debug messages to `log`. */
  verbose?: boolean;
  /** Another object file (tests); default bpf/prebuilt/kvm_trace.bpf.o. */
  objectPath?: string;
  /** Attach exactly these programs instead of the strategy's set (experiments, failure-path tests). */
  programs?: string[];
  /**
   * Try the copy hooks with these program families, in this order, whatever the feature probes say
   * (tests; diagnosing a kernel). Default: from the strategy (auto: fentry, then kprobe, where they work).
   */
  hookFamilies?: HookFamily[];
  /**
   * Aggregate-only mode: no ioctl records in the ring; per-CPU counters in the kernel (count, errors,
   * latency histogram per request, exit reasons per vCPU), read with aggregate(). fd-lifecycle records
   * still come through the ring.
   */
  aggregate?: boolean;
}

export interface TracerStats {
  /** Records dropped because the ring was full. */
  lost: number;
  /** Records submitted to the ring. */
  events: number;
  /** ioctl exits seen without their enter (attached mid-call); still recorded, flagged KT_F_NO_ENTER. */
  noEnter: number;
  /** KVM ioctls whose per-thread state could not be had (task storage not allocatable, or its lock busy): not recorded. */
  stateUnavailable: number;
}

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

export const DEFAULT_RING_BYTES = 8 << 20;
const PIDS_MAP_MIN = 64;

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

  #obj: BpfObjectPtr | null;
  #links: BpfLinkPtr[];
  #stats: BpfMapPtr;
  #ncpu: number;
  #final: TracerStats | undefined;
  #agg: AggregateMaps | undefined;
  #finalAgg: KernelAggregate | undefined;

  private constructor(init: {
    obj: BpfObjectPtr;
    links: BpfLinkPtr[];
    strategy: Strategy;
    reason: string;
    programs: string[];
    hooks: HookResult[];
    ringMapFd: number;
    ringBytes: number;
    stats: BpfMapPtr;
    flexArrays: string[];
    agg: AggregateMaps | undefined;
  }) {
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
    this.#ncpu = numPossibleCpus();
  }

  /** True when opened with `aggregate`: counters in the kernel, no ioctl records. */
  get aggregateOnly(): boolean {
    return this.#agg !== undefined;
  }

  /** Load and attach. Throws NotSupportedError / SyscallError / BpfLoadError / RangeError with one clear line. */
  static open(opts: TracerOptions = {}): KvmTracer {
    const log = opts.log ?? (() => {});
    const ringBytes = checkRingBytes(opts.ringBytes ?? DEFAULT_RING_BYTES);
    const wakeupBytes = checkWakeupBytes(opts.wakeupBytes ?? ringBytes / 4, ringBytes);
    const pids = checkPids(opts.pids ?? []);
    const comm = checkComm(opts.comm, log);
    const requested = opts.strategy ?? 'auto';
    if (!STRATEGIES.includes(requested)) {
      throw new RangeError(`unknown strategy "${String(requested)}" (one of ${STRATEGIES.join(', ')})`);
    }
    preflight();
    ensureTracefs(log);
    const choice = chooseStrategy(requested);
    log(`strategy ${choice.strategy}: ${choice.reason}`);

    const libbpfLog: string[] = [];
    // Quiet by default: libbpf's messages are kept and shown only when loading or attaching fails.
    setLibbpfLogger((_level, message) => {
      libbpfLog.push(message);
      if (opts.verbose) log(`libbpf: ${message}`);
    });

    const path = opts.objectPath ?? prebuiltObjectPath();
    const aggregate = opts.aggregate === true;
    const rdonlyCast = rdonlyCastUsable(log);
    const plan = planHooks(choice, requested, aggregate, opts.hookFamilies);
    const links: BpfLinkPtr[] = [];
    const wanted = (): string[] => opts.programs ?? [...BASE_PROGRAMS, ...hookProgramsToLoad(plan)];
    let loaded: LoadedObject<FlexArrayPlan | undefined> | undefined;
    try {
      loaded = loadWithRetry(path, plan, wanted, libbpfLog, log, (obj) => {
        writeRodata(obj, { pids, comm, wakeupBytes, aggregate, rdonlyCast });
        setMapMaxEntries(requireMap(obj, 'events'), ringBytes);
        setMapMaxEntries(requireMap(obj, 'pids'), Math.max(PIDS_MAP_MIN, pids.length));
        return flexArrayPlan(obj, path, log);
      });
      const { obj, progs, configured: flex } = loaded;
      fillPids(obj, pids);
      if (flex) fillFlexArrays(flex);
      const agg: AggregateMaps | undefined = aggregate
        ? { run: requireMap(obj, 'agg_run'), ioctls: requireMap(obj, 'agg_ioctls'), exits: requireMap(obj, 'agg_exits') }
        : undefined;
      if (agg) prepareAggregateMaps(agg, numPossibleCpus());

      // The base set (or an explicit program list) must attach whole; hooks attach one by one.
      const must = opts.programs ?? [...BASE_PROGRAMS];
      for (const name of must) {
        try {
          links.push(attachProgram(progs.get(name)!));
        } catch (err) {
          throw attachError(name, err, libbpfLog);
        }
      }
      const hooks = opts.programs ? explicitHooks(opts.programs) : attachHooks(plan, progs, links);
      for (const h of hooks) log(hookLine(h));
      let { strategy, reason } = choice;
      if (!opts.programs && strategy !== 'tracepoint' && !hooks.some((h) => h.attached)) {
        // Only tracepoints attached: say so, and why.
        const why = aggregate ? 'aggregate mode attaches no copy hook' : 'no copy hook could attach';
        reason = `${reason}; ${why}, so tracepoint only`;
        strategy = 'tracepoint';
        if (!aggregate) log(`strategy tracepoint: ${why}`);
      }
      const tracer = new KvmTracer({
        obj,
        links,
        strategy,
        reason,
        programs: [...must, ...hooks.filter((h) => h.attached && !must.includes(h.program!)).map((h) => h.program!)],
        hooks,
        ringMapFd: mapFd(requireMap(obj, 'events')),
        ringBytes,
        stats: requireMap(obj, 'stats'),
        flexArrays: flex ? flex.rules.map((r) => r.name) : [],
        agg,
      });
      registerOpen(tracer);
      return tracer;
    } catch (err) {
      for (const link of links.reverse()) destroyLink(link);
      if (loaded) closeObject(loaded.obj);
      throw err;
    } finally {
      setLibbpfLogger(null);
    }
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
    const v = new Array<number>(KT_STAT_MAX).fill(0);
    const key = Buffer.alloc(4);
    const value = Buffer.alloc(8 * this.#ncpu);
    for (let slot = 0; slot < KT_STAT_MAX; slot++) {
      key.writeUInt32LE(slot);
      if (!mapLookup(this.#stats, key, value)) continue;
      let sum = 0n;
      for (let cpu = 0; cpu < this.#ncpu; cpu++) sum += value.readBigUInt64LE(cpu * 8);
      v[slot] = Number(sum);
    }
    return { lost: v[KT_STAT_LOST], events: v[KT_STAT_EVENTS], noEnter: v[KT_STAT_NO_ENTER], stateUnavailable: v[KT_STAT_STATE_UNAVAILABLE] };
  }

  /**
   * Aggregate-only mode: the kernel's counters summed over CPUs; after close(), their final values (read
   * once the programs were detached). Throws when the tracer was not opened with `aggregate`.
   */
  aggregate(): KernelAggregate {
    if (!this.#agg) throw new Error('KvmTracer was not opened in aggregate mode');
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
   * close(), with the links destroyed side by side on worker threads: each detach waits for RCU grace
   * periods in the kernel, and overlapping them takes one wait instead of one per link. Programs may run
   * until it settles. Safe to call more than once; close() may follow (and does nothing more).
   */
  async detach(): Promise<void> {
    if (!this.#obj) return;
    const links = this.#links;
    this.#links = [];
    await Promise.allSettled(links.map((l) => destroyLinkAsync(l)));
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
      if (this.#agg) this.#finalAgg = this.aggregate();
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
