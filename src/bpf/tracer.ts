/**
 * KvmTracer: the one lifecycle of kvm-trace's BPF side, libbpf-tools style:
 *   preflight (libbpf, root, BTF) → pick strategy (feature probes) → tracefs → open the prebuilt object →
 *   set rodata filters and map sizes → autoload only the chosen programs → load → fill the pids and
 *   flex_arrays maps (the latter from the kernel's BTF: which arguments' flexible-array entries to read) →
 *   attach → (the ring-buffer consumer runs elsewhere, on ringMapFd) → close(): destroy every link, close
 *   the object. close() is idempotent; a failure anywhere in open() tears down what was built; a process
 *   'exit' hook closes tracers left open (the kernel would free them with the fds anyway: nothing is pinned).
 */
import { readFileSync } from 'node:fs';
import { SyscallError, NotSupportedError } from '../ffi/errors.js';
import {
  type BpfLinkPtr,
  type BpfMapPtr,
  type BpfObjectPtr,
  type BpfProgramPtr,
  attachProgram,
  bpfObjectId,
  closeObject,
  datasecVars,
  destroyLink,
  destroyLinkAsync,
  findMap,
  linkFd,
  loadObject,
  mapFd,
  mapInitialValue,
  mapLookup,
  mapUpdate,
  numPossibleCpus,
  objectMaps,
  objectPrograms,
  openObjectFile,
  programFd,
  programName,
  setLibbpfLogger,
  setMapInitialValue,
  setMapMaxEntries,
  setProgramAutoload,
} from '../ffi/libbpf.js';
import { KT_STAT_EVENTS, KT_STAT_LOST, KT_STAT_MAX, KT_STAT_NO_ENTER, KT_STAT_STATE_FULL } from './event-layout.js';
import { probeFeature } from './features.js';
import { type AggregateMaps, type KernelAggregate, prepareAggregateMaps, readAggregate } from './aggregate.js';
import { Btf } from '../btf/index.js';
import { FlexArrayEncoder, flexArrayRules, type FlexArrayRule } from './flex-arrays.js';
import { prebuiltObjectPath } from './paths.js';
import { AUTO_ORDER, BASE_PROGRAMS, type Strategy, type StrategyOption, STRATEGIES, strategyPrograms } from './programs.js';
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
  /** ioctl enters whose per-thread state could not be stored. */
  stateFull: number;
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

/** Loading failed (verifier, relocation): carries libbpf's log, including the verifier's. */
export class BpfLoadError extends Error {
  readonly libbpfLog: string;
  constructor(message: string, libbpfLog: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BpfLoadError';
    this.libbpfLog = libbpfLog;
  }
}

export const DEFAULT_RING_BYTES = 8 << 20;
const TASK_COMM_LEN = 16;
const PIDS_MAP_MIN = 64;

interface StrategyChoice {
  strategy: Strategy;
  reason: string;
}

const openTracers = new Set<KvmTracer>();
let exitHookInstalled = false;

export class KvmTracer {
  readonly strategy: Strategy;
  /** Why this strategy: the feature probes' answers. */
  readonly reason: string;
  /** Names of the attached programs. */
  readonly programs: string[];
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
    const wakeupBytes = opts.wakeupBytes ?? ringBytes / 4;
    if (!Number.isInteger(wakeupBytes) || wakeupBytes < 0 || wakeupBytes >= ringBytes) {
      throw new RangeError(`wakeup threshold must be 0 (off) or a byte count below the ring size ${ringBytes} (got ${wakeupBytes})`);
    }
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
    const obj = openObjectFile(path);
    const links: BpfLinkPtr[] = [];
    try {
      writeRodata(obj, { pids, comm, wakeupBytes, aggregate: opts.aggregate === true });
      setMapMaxEntries(requireMap(obj, 'events'), ringBytes);
      setMapMaxEntries(requireMap(obj, 'pids'), Math.max(PIDS_MAP_MIN, pids.length));
      const flex = flexArrayPlan(obj, path, log);
      if (flex) setMapMaxEntries(flex.map, Math.max(1, flex.rules.length));

      const wanted = opts.programs ?? strategyPrograms(choice.strategy);
      const progs = selectPrograms(obj, wanted);
      try {
        loadObject(obj);
      } catch (err) {
        const text = libbpfLog.join('\n');
        for (const line of verifierTail(libbpfLog)) log(line);
        throw new BpfLoadError(`loading ${path} failed: ${(err as Error).message}`, text, { cause: err });
      }
      fillPids(obj, pids);
      if (flex) fillFlexArrays(flex);
      const agg: AggregateMaps | undefined = opts.aggregate
        ? { run: requireMap(obj, 'agg_run'), ioctls: requireMap(obj, 'agg_ioctls'), exits: requireMap(obj, 'agg_exits') }
        : undefined;
      if (agg) prepareAggregateMaps(agg, numPossibleCpus());

      const attached: string[] = [];
      let strategy = choice.strategy;
      let reason = choice.reason;
      for (const name of wanted) {
        const prog = progs.get(name)!;
        try {
          links.push(attachProgram(prog));
          attached.push(name);
        } catch (err) {
          const base = (BASE_PROGRAMS as readonly string[]).includes(name);
          if (base || requested !== 'auto' || opts.programs) throw attachError(name, err, libbpfLog);
          // auto: the richer programs loaded but cannot attach here; keep the base set.
          reason = `${reason}; attaching ${name} failed (${(err as Error).message}), so tracepoint only`;
          strategy = 'tracepoint';
          log(`strategy tracepoint: ${name} could not attach: ${(err as Error).message}`);
          break;
        }
      }
      if (strategy !== choice.strategy) {
        // Drop the richer links already attached; the base programs come first and stay.
        while (attached.length > BASE_PROGRAMS.length) {
          attached.pop();
          destroyLink(links.pop()!);
        }
      }
      const tracer = new KvmTracer({
        obj,
        links,
        strategy,
        reason,
        programs: attached,
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
      closeObject(obj);
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
    return { lost: v[KT_STAT_LOST], events: v[KT_STAT_EVENTS], noEnter: v[KT_STAT_NO_ENTER], stateFull: v[KT_STAT_STATE_FULL] };
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

function preflight(): void {
  const lib = probeFeature('libbpf');
  if (lib.status === 'unsupported') throw new NotSupportedError(lib.detail);
  if (process.getuid?.() !== 0) {
    throw new SyscallError('bpf', 1 /* EPERM */, 'kvm-trace must run as root to load BPF programs');
  }
  const btf = probeFeature('btf');
  if (btf.status !== 'available') throw new NotSupportedError(btf.detail);
  for (const need of ['ringbuf', 'task_storage'] as const) {
    const a = probeFeature(need);
    if (a.status === 'unsupported') throw new NotSupportedError(`kvm-trace needs ${a.detail}`);
  }
}

/** The strategy to use: an explicit one that cannot work is a NotSupportedError; auto takes the richest. */
export function chooseStrategy(requested: StrategyOption): StrategyChoice {
  if (requested !== 'auto') {
    const a = probeFeature(requested);
    if (a.status === 'unsupported') throw new NotSupportedError(`strategy ${requested} is not available here: ${a.detail}`);
    return { strategy: requested, reason: `requested (${a.status}: ${a.detail})` };
  }
  const why: string[] = [];
  for (const s of AUTO_ORDER) {
    const a = probeFeature(s);
    if (a.status === 'available') {
      why.push(`${s}: ${a.detail}`);
      return { strategy: s, reason: `auto: ${why.join('; ')}` };
    }
    why.push(`${s} ${a.status}: ${a.detail}`);
  }
  throw new NotSupportedError(`no attach strategy works here: ${why.join('; ')}`);
}

function checkRingBytes(n: number): number {
  if (!Number.isInteger(n) || n < 4096 || n > 1 << 30 || (n & (n - 1)) !== 0) {
    throw new RangeError(`ring buffer size must be a power of two between 4096 and 1 GiB bytes (got ${n})`);
  }
  return n;
}

function checkPids(pids: number[]): number[] {
  for (const p of pids) {
    if (!Number.isInteger(p) || p <= 0 || p > 0x3fffffff) throw new RangeError(`invalid pid ${p}`);
  }
  return [...new Set(pids)];
}

function checkComm(comm: string | undefined, log: (line: string) => void): Buffer | undefined {
  if (comm === undefined) return undefined;
  const bytes = Buffer.from(comm, 'utf8');
  if (bytes.length === 0) throw new RangeError('process name filter is empty');
  if (bytes.length >= TASK_COMM_LEN) {
    log(`process names are at most ${TASK_COMM_LEN - 1} bytes in the kernel: matching "${bytes.subarray(0, TASK_COMM_LEN - 1)}"`);
  }
  const out = Buffer.alloc(TASK_COMM_LEN);
  bytes.copy(out, 0, 0, TASK_COMM_LEN - 1);
  return out;
}

function requireMap(obj: BpfObjectPtr, name: string): BpfMapPtr {
  const m = findMap(obj, name);
  if (!m) throw new Error(`BPF object has no map "${name}" (stale or foreign object?)`);
  return m;
}

/** Write the `const volatile` filters into the .rodata image, at offsets from the object's BTF. */
function writeRodata(obj: BpfObjectPtr, f: { pids: number[]; comm?: Buffer; wakeupBytes: number; aggregate: boolean }): void {
  const rodata = requireMap(obj, '.rodata');
  const image = mapInitialValue(rodata);
  const vars = new Map(datasecVars(obj, '.rodata').map((v) => [v.name, v]));
  const at = (name: string, size: number): number => {
    const v = vars.get(name);
    if (!v || v.size !== size) throw new Error(`.rodata variable ${name} (${size} bytes) not found in the BPF object`);
    return v.offset;
  };
  if (f.pids.length === 1) image.writeUInt32LE(f.pids[0], at('filter_pid', 4));
  if (f.pids.length > 1) image.writeUInt8(1, at('filter_pids', 1));
  if (f.comm) {
    image.writeUInt8(1, at('filter_comm', 1));
    f.comm.copy(image, at('targ_comm', TASK_COMM_LEN));
  }
  image.writeBigUInt64LE(BigInt(f.wakeupBytes), at('wakeup_bytes', 8));
  if (f.aggregate) image.writeUInt8(1, at('aggregate_only', 1));
  setMapInitialValue(rodata, image);
}

function selectPrograms(obj: BpfObjectPtr, wanted: string[]): Map<string, BpfProgramPtr> {
  const byName = new Map<string, BpfProgramPtr>();
  for (const prog of objectPrograms(obj)) {
    const name = programName(prog);
    setProgramAutoload(prog, wanted.includes(name));
    byName.set(name, prog);
  }
  for (const name of wanted) {
    if (!byName.has(name)) throw new Error(`BPF object has no program "${name}" (stale object?)`);
  }
  return byName;
}

function fillPids(obj: BpfObjectPtr, pids: number[]): void {
  if (pids.length < 2) return;
  const map = requireMap(obj, 'pids');
  const key = Buffer.alloc(4);
  const one = Buffer.from([1]);
  for (const p of pids) {
    key.writeUInt32LE(p);
    mapUpdate(map, key, one);
  }
}

interface FlexArrayPlan {
  map: BpfMapPtr;
  rules: FlexArrayRule[];
  encoder: FlexArrayEncoder;
}

/**
 * What goes into the flex_arrays map, computed before load (it sizes the map). An object without the map
 * (an older build, e.g. a benchmark baseline) or a kernel BTF the rules cannot be read from still traces:
 * arguments are then captured at their _IOC_SIZE only, and the log says so.
 */
function flexArrayPlan(obj: BpfObjectPtr, path: string, log: (line: string) => void): FlexArrayPlan | undefined {
  const map = findMap(obj, 'flex_arrays');
  if (!map) {
    log(`${path} has no flex_arrays map: flexible-array entries (kvm_msrs.entries, …) are not captured`);
    return undefined;
  }
  try {
    return { map, rules: flexArrayRules(Btf.vmlinux()), encoder: new FlexArrayEncoder(Btf.fromElf(path)) };
  } catch (err) {
    log(`flexible-array entries are not captured: ${(err as Error).message}`);
    setMapMaxEntries(map, 1);
    return undefined;
  }
}

/** After load, before attach: the programs look entries up from their first run. */
function fillFlexArrays(plan: FlexArrayPlan): void {
  for (const r of plan.rules) mapUpdate(plan.map, plan.encoder.key(r), plan.encoder.value(r));
}

function attachError(name: string, err: unknown, libbpfLog: string[]): Error {
  const last = libbpfLog.filter((l) => l.includes(name)).pop();
  const msg = `attaching ${name} failed: ${(err as Error).message}${last ? ` (libbpf: ${last.trim()})` : ''}`;
  if (err instanceof SyscallError && (err.errno === 95 || err.errno === 2)) return new NotSupportedError(msg, { cause: err });
  return new Error(msg, { cause: err });
}

/** The verifier's own lines of a failed load (libbpf wraps them in BEGIN/END PROG LOAD LOG). */
function verifierTail(lines: string[], max = 60): string[] {
  const text = lines.join('\n').split('\n');
  return text.slice(-max).map((l) => `libbpf: ${l}`);
}

function registerOpen(t: KvmTracer): void {
  openTracers.add(t);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const tracer of [...openTracers]) tracer.close();
  });
}
