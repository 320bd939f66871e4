/**
 * The steps of KvmTracer.open on either side of the load, shared by open() and openAsync(), in lifecycle
 * order: before it (planOpen) check the options, preflight, mount tracefs, choose the strategy, route
 * libbpf's log, decide the read mode and the hook plan, and say how a freshly opened object is configured
 * (rodata, map sizes, the flex_arrays plan); after it (attachLoaded) fill the pids and flex_arrays maps and
 * attach — the base set whole, the copy hooks one by one, the hardware-exit set both or neither.
 */
import { type BpfLinkPtr, type BpfMapPtr, type BpfObjectPtr, attachProgram, closeObject, destroyLink, mapFd, numPossibleCpus, setLibbpfLogger, setMapMaxEntries } from '../ffi/libbpf.js';
import { type AggregateMaps, prepareAggregateMaps } from './aggregate.js';
import { attachHooks, explicitHooks, type HookPlan, type HookResult, hookLine, hookProgramsToLoad, planHooks } from './hooks.js';
import { attachHw, type HwAttach, hwLine, hwNotLoadedReason, HW_PROGRAMS } from './hw-exits.js';
import type { LoadedObject } from './load.js';
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
import { chooseStrategy, preflight, rdonlyCastUsable, type StrategyChoice } from './strategy.js';
import { ensureTracefs } from './tracefs.js';

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

export const DEFAULT_RING_BYTES = 8 << 20;
const PIDS_MAP_MIN = 64;

/** What planOpen decided: everything the load and the attach need. */
export interface OpenPlan {
  opts: TracerOptions;
  log: (line: string) => void;
  /** libbpf's messages of this open (shown when loading or attaching fails). */
  libbpfLog: string[];
  path: string;
  choice: StrategyChoice;
  plan: HookPlan;
  ringBytes: number;
  pids: number[];
  aggregate: boolean;
  /** Why the hardware-exit set is not loaded (undefined: load it); asked again as the plan's notLoaded grows. */
  hwSkip: () => string | undefined;
  /** The programs to autoload (asked again on every load try: the plan's notLoaded grows). */
  wanted: () => string[];
  /** Configure a freshly opened object before load: rodata, map sizes; the flex_arrays plan. */
  configure: (obj: BpfObjectPtr) => FlexArrayPlan | undefined;
}

/** Everything a KvmTracer holds once attached. */
export interface AttachedObject {
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
}

/**
 * Up to the load. Installs libbpf's log hook for this open: the caller resets it (setLibbpfLogger(null))
 * when the open is over, whichever way it ends.
 */
export function planOpen(opts: TracerOptions): OpenPlan {
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
  // Not requested, or the tracepoints are missing: known once (tracefs is read here). A program the kernel
  // refused on a load try: asked again each time (the plan's notLoaded grows).
  const hwMissing = opts.programs ? 'an explicit program list was given' : hwNotLoadedReason(opts.hwExits === true);
  const hwSkip = (): string | undefined => hwMissing ?? HW_PROGRAMS.map((prog) => plan.notLoaded.get(prog)).find((x) => x !== undefined);
  const hwPrograms = (): string[] => (hwSkip() === undefined ? [...HW_PROGRAMS] : []);
  return {
    opts,
    log,
    libbpfLog,
    path,
    choice,
    plan,
    ringBytes,
    pids,
    aggregate,
    hwSkip,
    wanted: () => opts.programs ?? [...BASE_PROGRAMS, ...hookProgramsToLoad(plan), ...hwPrograms()],
    configure: (obj) => {
      writeRodata(obj, { pids, comm, wakeupBytes, aggregate, rdonlyCast, hwHooks: hwPrograms().length > 0, mmioShift });
      setMapMaxEntries(requireMap(obj, 'events'), ringBytes);
      setMapMaxEntries(requireMap(obj, 'pids'), Math.max(PIDS_MAP_MIN, pids.length));
      return flexArrayPlan(obj, path, log);
    },
  };
}

/** After the load: fill the maps, attach. On failure every link made is destroyed and the object closed. */
export function attachLoaded(p: OpenPlan, loaded: LoadedObject<FlexArrayPlan | undefined>): AttachedObject {
  const { opts, log, libbpfLog, plan, aggregate } = p;
  const { obj, progs, configured: flex } = loaded;
  const links: BpfLinkPtr[] = [];
  try {
    fillPids(obj, p.pids);
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
    const hwExits = attachHw(progs, p.hwSkip(), links);
    if (hwExits.requested) log(hwLine(hwExits));
    let { strategy, reason } = p.choice;
    if (!opts.programs && strategy !== 'tracepoint' && !hooks.some((h) => h.attached)) {
      // Only tracepoints attached: say so, and why.
      const why = aggregate ? 'aggregate mode attaches no copy hook' : 'no copy hook could attach';
      reason = `${reason}; ${why}, so tracepoint only`;
      strategy = 'tracepoint';
      if (!aggregate) log(`strategy tracepoint: ${why}`);
    }
    return {
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
      ringBytes: p.ringBytes,
      stats: requireMap(obj, 'stats'),
      flexArrays: flex ? flex.rules.map((r) => r.name) : [],
      agg,
      aggregateOnly: aggregate,
      hwExits,
    };
  } catch (err) {
    for (const link of links.reverse()) destroyLink(link);
    closeObject(obj);
    throw err;
  }
}

/** log2 of the MMIO granule (a power of two between 1 byte and 1 GiB). */
function checkMmioGranule(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 1 << 30 || (n & (n - 1)) !== 0) throw new RangeError(`MMIO granule must be a power of two up to 1 GiB (got ${n})`);
  return Math.log2(n);
}
