/**
 * runGuest: the reference guest's programmatic entry (the `kvm-trace guest` command and other engineers'
 * capture tests call it in-process). One VM, guest RAM with every program, N vCPUs each created and driven
 * by its own worker_thread, optional layout scenario and long-mode probe, and an optional ground-truth log.
 * Every fd and mapping is released on every path; the log is written even when the run fails.
 */
import { Worker } from 'node:worker_threads';
import { MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, memoryView, mmap, munmap, PAGE_SIZE, PROT_READ, PROT_WRITE } from '../ffi/libc.js';
import { kvmRunLayout } from '../kvm/kvm-run.js';
import { ioctlCount, setKvmObserver } from '../kvm/observer.js';
import { defaultKvmPath, Kvm } from '../kvm/system.js';
import type { Vm } from '../kvm/vm.js';
import { GuestAborted, GuestFault, GuestUsageError } from './errors.js';
import { summarizeLayout, type LayoutSummary } from './layout-context.js';
import { layoutVm } from './layout-vm.js';
import { writeGroundTruth } from './log-writer.js';
import { probeLongMode } from './long-mode.js';
import { ALL_SCENARIOS, allPrograms, LAYOUT_SLOT_COUNT, LAYOUT_SLOT_GPA, RAM_GPA, RAM_SIZE, SCENARIO_CHOICES, SCENARIOS, slotMarker, type Scenario } from './programs.js';
import { GroundTruthRecorder, type RecordedLog } from './recorder.js';
import type { GtRecord } from './records.js';
import type { VcpuSessionInput, VcpuSessionOutput } from './vcpu-session.js';
import { vcpuWorkerUrl } from './worker-url.js';

export interface GuestOptions {
  /** A scenario name or "all" (default "pio-out"). */
  scenario?: string;
  /** vCPUs, each on its own thread (default 1). */
  vcpus?: number;
  /** Loop exits per vCPU and scenario (default 1000). */
  exits?: number;
  /** Ground-truth JSONL path. */
  log?: string;
  /** KVM device (default $KVM_TRACE_KVM_DEV or /dev/kvm). */
  kvmDevice?: string;
  /** Try a 64-bit guest too (default true). */
  probeLongMode?: boolean;
}

export interface VcpuSummary {
  vcpu: number;
  tid: number;
  fd: number;
  user_addr: string | null;
  exits: Record<string, number>;
  ioctls: number;
  /** Loop time over loop exits (excludes setup), µs. */
  us_per_exit: number | null;
  scenarios: Array<{ scenario: string; exits: Record<string, number>; loop_ns: number }>;
}

export interface GuestResult {
  pid: number;
  scenarios: Scenario[];
  vcpus: number;
  exits: Record<string, number>;
  /** Every ioctl the process issued for the run (equals the ioctl records of the log). */
  ioctls: number;
  kvm_run: Array<{ vcpu: number; user_addr: string | null; fd: number; mmap_size: number }>;
  per_vcpu: VcpuSummary[];
  long_mode: boolean;
  long_mode_detail: string;
  layout: LayoutSummary | null;
  elapsed_s: number;
  log: string | null;
}

export const DEFAULT_EXITS = 1000;
export const MAX_VCPUS = 64;

/** The scenarios `name` stands for; GuestUsageError naming the valid ones otherwise. */
export function resolveScenarios(name: string): Scenario[] {
  if (name === 'all') return [...ALL_SCENARIOS];
  if ((SCENARIOS as readonly string[]).includes(name)) return [name as Scenario];
  throw new GuestUsageError(`unknown scenario '${name}' (valid: ${SCENARIO_CHOICES.join(', ')})`);
}

function checkInt(what: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new GuestUsageError(`${what} must be an integer from ${min} to ${max}, got ${v}`);
  return v;
}

/** Map `size` bytes of anonymous memory and register its release. */
function mapAnon(size: number, cleanup: Array<() => void>): bigint {
  const addr = mmap(0n, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  cleanup.push(() => munmap(addr, size));
  return addr;
}

export async function runGuest(opts: GuestOptions = {}, signal?: AbortSignal): Promise<GuestResult> {
  const scenarios = resolveScenarios(opts.scenario ?? 'pio-out');
  const nvcpus = checkInt('--vcpus', opts.vcpus ?? 1, 1, MAX_VCPUS);
  const exits = checkInt('--exits', opts.exits ?? DEFAULT_EXITS, 0, 0x7fffffff);
  if (signal?.aborted) throw new GuestAborted();
  const started = process.hrtime.bigint();
  const rec = opts.log ? new GroundTruthRecorder(64) : null;
  const prevObserver = setKvmObserver(rec);
  const ioctl0 = ioctlCount();
  const cleanup: Array<() => void> = [];
  const outputs: VcpuSessionOutput[] = [];
  const memory: GtRecord[] = [];
  let longMode = { supported: false, detail: 'not probed' };
  let layoutObs: ReturnType<typeof layoutVm> | null = null;
  let failure: unknown = null;
  try {
    const kvm = Kvm.open(opts.kvmDevice ?? defaultKvmPath());
    cleanup.push(() => kvm.close());
    const api = kvm.apiVersion();
    if (api !== 12) throw new Error(`KVM API version ${api}, expected 12`);
    const vm = kvm.createVm();
    cleanup.push(() => vm.close());
    const ram = mapAnon(RAM_SIZE, cleanup);
    const bytes = new Uint8Array(memoryView(ram, RAM_SIZE));
    for (const p of allPrograms()) bytes.set(p.code, p.origin - RAM_GPA);
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: BigInt(RAM_GPA), memory_size: BigInt(RAM_SIZE), userspace_addr: ram });
    memory.push(memRecord(0, RAM_GPA, RAM_SIZE, ram));
    let msrs: number[] = [];
    if (scenarios.includes('layout')) {
      const slots = mapAnon(LAYOUT_SLOT_COUNT * PAGE_SIZE, cleanup);
      const sb = new Uint8Array(memoryView(slots, LAYOUT_SLOT_COUNT * PAGE_SIZE));
      for (let i = 0; i < LAYOUT_SLOT_COUNT; i++) {
        sb[i * PAGE_SIZE] = slotMarker(i + 1);
        memory.push(memRecord(i + 1, LAYOUT_SLOT_GPA + i * 0x1000, PAGE_SIZE, slots + BigInt(i * PAGE_SIZE)));
      }
      layoutObs = layoutVm(kvm, vm, slots, rec);
      msrs = layoutObs.msrs;
    }
    outputs.push(...(await runVcpus(vm, nvcpus, scenarios, exits, !!rec, msrs, signal)));
    const failed = outputs.find((o) => o.error && o.error.name !== 'GuestAborted') ?? outputs.find((o) => o.error);
    if (failed?.error) throw workerError(failed);
    if (signal?.aborted) throw new GuestAborted();
    if (opts.probeLongMode ?? true) longMode = probeLongMode(kvm);
  } catch (err) {
    failure = err;
  } finally {
    for (const f of cleanup.reverse()) {
      try {
        f();
      } catch (err) {
        failure ??= err;
      }
    }
    setKvmObserver(prevObserver);
  }
  const layoutAll = layoutObs ? [...layoutObs.observations, ...outputs.flatMap((o) => o.layout)] : [];
  // The slots' contents were proven by every vCPU's layout program reading them (checked in the worker).
  if (layoutObs && !failure) for (const o of layoutObs.slotObservations) o.roundtrip = o.ok;
  const result = summarize(opts, scenarios, nvcpus, outputs, longMode, layoutObs ? summarizeLayout(layoutAll) : null);
  result.ioctls = ioctlCount() - ioctl0 + outputs.reduce((n, o) => n + o.ioctls, 0);
  result.elapsed_s = Number(process.hrtime.bigint() - started) / 1e9;
  if (opts.log && rec) writeLog(opts.log, rec, outputs, memory, result);
  if (failure) throw failure;
  return result;
}

const memRecord = (slot: number, gpa: number, size: number, addr: bigint): GtRecord => ({
  type: 'memory', slot, guest_phys_addr: `0x${gpa.toString(16)}`, size, user_addr: `0x${addr.toString(16)}`,
});

/** One worker per vCPU; resolves when every worker has reported (or died). */
async function runVcpus(vm: Vm, n: number, scenarios: Scenario[], exits: number, log: boolean, msrs: number[], signal?: AbortSignal): Promise<VcpuSessionOutput[]> {
  const url = vcpuWorkerUrl();
  const stopBuf = new SharedArrayBuffer(4);
  const stop = new Int32Array(stopBuf);
  const onAbort = (): void => void Atomics.store(stop, 0, 1);
  signal?.addEventListener('abort', onAbort);
  const runLayout = kvmRunLayout();
  try {
    return await Promise.all(
      Array.from({ length: n }, (_, vcpu) => {
        const input: VcpuSessionInput = { vmFd: vm.fd, runSize: vm.runSize, runLayout, vcpu, scenarios, exits, log, stop: stopBuf, msrs };
        return new Promise<VcpuSessionOutput>((resolve) => {
          // Resolve on 'exit', not on the message: only then has the thread (and its event loop's fds) gone.
          const w = new Worker(url, { workerData: input });
          let out: VcpuSessionOutput | null = null;
          let error = '';
          w.once('message', (o: VcpuSessionOutput) => (out = o));
          w.once('error', (err) => {
            error = `vCPU ${vcpu} worker failed: ${err.message}`;
            Atomics.store(stop, 0, 1);
          });
          w.once('exit', (code) => {
            if (!out) Atomics.store(stop, 0, 1);
            resolve(out ?? deadWorker(vcpu, vm.runSize, error || `vCPU ${vcpu} worker exited with code ${code} before reporting`));
          });
        });
      }),
    );
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function deadWorker(vcpu: number, mmapSize: number, message: string): VcpuSessionOutput {
  return { vcpu, tid: 0, fd: -1, userAddr: null, mmapSize, counts: {}, scenarios: [], ioctls: 0, layout: [], log: null, error: { name: 'Error', message } };
}

function workerError(o: VcpuSessionOutput): Error {
  const e = o.error!;
  if (e.name === 'GuestAborted') return new GuestAborted();
  if (e.name === 'GuestFault') {
    const f = new GuestFault(o.vcpu, e.scenario ?? '?', '');
    f.message = e.message; // already "vCPU n (scenario s): ..."
    return f;
  }
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

function summarize(
  opts: GuestOptions,
  scenarios: Scenario[],
  vcpus: number,
  outputs: VcpuSessionOutput[],
  longMode: { supported: boolean; detail: string },
  layout: LayoutSummary | null,
): GuestResult {
  const exits: Record<string, number> = {};
  for (const o of outputs) for (const [k, n] of Object.entries(o.counts)) exits[k] = (exits[k] ?? 0) + n;
  const per_vcpu = outputs.map((o): VcpuSummary => {
    const loops = o.scenarios.filter((s) => s.scenario !== 'layout');
    const runs = loops.reduce((n, s) => n + s.runs, 0);
    const ns = loops.reduce((n, s) => n + s.loopNs, 0);
    return {
      vcpu: o.vcpu, tid: o.tid, fd: o.fd, user_addr: o.userAddr, exits: o.counts, ioctls: o.ioctls,
      us_per_exit: runs ? Math.round(ns / runs) / 1000 : null,
      scenarios: o.scenarios.map((s) => ({ scenario: s.scenario, exits: s.counts, loop_ns: s.loopNs })),
    };
  });
  return {
    pid: process.pid,
    scenarios,
    vcpus,
    exits,
    ioctls: 0,
    kvm_run: outputs.map((o) => ({ vcpu: o.vcpu, user_addr: o.userAddr, fd: o.fd, mmap_size: o.mmapSize })),
    per_vcpu,
    long_mode: longMode.supported,
    long_mode_detail: longMode.detail,
    layout,
    elapsed_s: 0,
    log: opts.log ?? null,
  };
}

function writeLog(path: string, rec: GroundTruthRecorder, outputs: VcpuSessionOutput[], memory: GtRecord[], r: GuestResult): void {
  const logs: RecordedLog[] = [rec.export(), ...outputs.flatMap((o) => (o.log ? [o.log] : []))];
  const tail: GtRecord[] = [
    ...memory,
    ...outputs.map((o): GtRecord => ({ type: 'exits', vcpu: o.vcpu, counts: o.counts })),
    { type: 'summary', pid: r.pid, scenarios: r.scenarios, vcpus: r.vcpus, exits: r.exits, ioctls: r.ioctls, long_mode: r.long_mode, elapsed_s: r.elapsed_s },
  ];
  writeGroundTruth(path, logs, tail);
}
