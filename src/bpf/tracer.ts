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
  numPossibleCpus,
  objectMaps,
  objectPrograms,
  programFd,
  programName,
  setLibbpfLogger,
  setMapMaxEntries,
} from '../ffi/libbpf.js';
import { readStats, type TracerStats } from './stats.js';
import { type AggregateMaps, type KernelAggregate, prepareAggregateMaps, readAggregate } from './aggregate.js';
import { attachHw, type HwAttach, hwLine, hwNotLoadedReason, HW_PROGRAMS } from './hw-exits.js';
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
export type { HwAttach } from './hw-exits.js';
export type { TracerStats } from './stats.js';
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
  /**
   * Load the hardware-exit hook set (kvm:kvm_entry / kvm:kvm_exit): KVM_RUN counts its in-kernel exits and
   * guest time, and each exit's time in KVM per reason is kept in the kernel (hwAggregate()). Attached on its
   * own: where it cannot, `hwExits` says why and the rest runs.
   */
  hwExits?: boolean;
  /** Aggregate mode: MMIO exits key handling time by aligned ranges of this many bytes (a power of two; 4096). */
  mmioGranule?: number;
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
    agg: AggregateMaps;
    aggregateOnly: boolean;
    hwExits: HwAttach;
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
    const mmioShift = checkMmioGranule(opts.mmioGranule ?? 4096);
    const plan = planHooks(choice, requested, aggregate, opts.hookFamilies);
    const hwSkip = (): string | undefined => {
      const failed = HW_PROGRAMS.map((p) => plan.notLoaded.get(p)).find((x) => x !== undefined);
      return opts.programs ? 'an explicit program list was given' : (hwNotLoadedReason(opts.hwExits === true) ?? failed);
    };
    const hwPrograms = (): string[] => (hwSkip() === undefined ? [...HW_PROGRAMS] : []);
    const links: BpfLinkPtr[] = [];
    const wanted = (): string[] => opts.programs ?? [...BASE_PROGRAMS, ...hookProgramsToLoad(plan), ...hwPrograms()];
    let loaded: LoadedObject<FlexArrayPlan | undefined> | undefined;
    try {
      loaded = loadWithRetry(path, plan, wanted, libbpfLog, log, (obj) => {
        writeRodata(obj, { pids, comm, wakeupBytes, aggregate, rdonlyCast, hwHooks: hwPrograms().length > 0, mmioShift });
        setMapMaxEntries(requireMap(obj, 'events'), ringBytes);
        setMapMaxEntries(requireMap(obj, 'pids'), Math.max(PIDS_MAP_MIN, pids.length));
        return flexArrayPlan(obj, path, log);
      });
      const { obj, progs, configured: flex } = loaded;
      fillPids(obj, pids);
      if (flex) fillFlexArrays(flex);
      const agg: AggregateMaps = {
        ioctls: requireMap(obj, 'agg_ioctls'),
        vcpus: requireMap(obj, 'agg_vcpus'),
        handling: requireMap(obj, 'agg_handling'),
        hw: requireMap(obj, 'agg_hw'),
        vms: requireMap(obj, 'agg_vms'),
      };
      prepareAggregateMaps(agg, numPossibleCpus());

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
      const hwExits = attachHw(progs, hwSkip(), links);
      if (hwExits.requested) log(hwLine(hwExits));
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
        programs: [
          ...must,
          ...hooks.filter((h) => h.attached && !must.includes(h.program!)).map((h) => h.program!),
          ...(hwExits.attached ? HW_PROGRAMS : []),
        ],
        hooks,
        ringMapFd: mapFd(requireMap(obj, 'events')),
        ringBytes,
        stats: requireMap(obj, 'stats'),
        flexArrays: flex ? flex.rules.map((r) => r.name) : [],
        agg,
        aggregateOnly: aggregate,
        hwExits,
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
      if (this.#aggregateOnly || this.hwExits.requested) this.#finalAgg = this.aggregate();
    } finally {
      this.#obj = null;
      openTracers.delete(this);
      closeObject(obj);
    }
  }
}

/** log2 of the MMIO granule (a power of two between 1 byte and 1 GiB). */
function checkMmioGranule(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 1 << 30 || (n & (n - 1)) !== 0) throw new RangeError(`MMIO granule must be a power of two up to 1 GiB (got ${n})`);
  return Math.log2(n);
}

function registerOpen(t: KvmTracer): void {
  openTracers.add(t);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const tracer of [...openTracers]) tracer.close();
  });
}
