/**
 * Everything one vCPU thread does, start to end: borrow the VM fd, create its vCPU (so the vCPU's ioctls
 * come from the thread that created it), run the scenarios, close the vCPU (fd and kvm_run mapping) on
 * every path, and return counts, layout observations and, with --log, its ground-truth records.
 * vcpu-worker.ts runs this in a worker_thread; the input and output are structured-clone friendly.
 */
import type { KvmRunLayout } from '../kvm/kvm-run.js';
import { currentTid, ioctlCount, setKvmObserver } from '../kvm/observer.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { Vm } from '../kvm/vm.js';
import { GuestFault } from './errors.js';
import type { LayoutObservation } from './layout-context.js';
import { layoutVcpu } from './layout-vcpu.js';
import { programFor, type Scenario } from './programs.js';
import { GroundTruthRecorder, type RecordedLog } from './recorder.js';
import { runProgram } from './vcpu-driver.js';

export interface VcpuSessionInput {
  vmFd: number;
  runSize: number;
  runLayout: KvmRunLayout;
  vcpu: number;
  scenarios: Scenario[];
  exits: number;
  log: boolean;
  /** Int32Array[0] != 0 asks the loop to stop (abort, or another vCPU failed). */
  stop: SharedArrayBuffer;
  /** MSRs the layout scenario may use (listed by KVM_GET_MSR_INDEX_LIST). */
  msrs: number[];
}

export interface ScenarioRun {
  scenario: Scenario;
  counts: Record<string, number>;
  runs: number;
  loopNs: number;
}

export interface VcpuSessionOutput {
  vcpu: number;
  tid: number;
  fd: number;
  userAddr: string | null;
  mmapSize: number;
  counts: Record<string, number>;
  scenarios: ScenarioRun[];
  /** ioctls this thread issued (all of them: equals its ioctl records when logging). */
  ioctls: number;
  layout: LayoutObservation[];
  log: RecordedLog | null;
  error: { name: string; message: string; scenario?: string } | null;
}

/** Expected KVM_RUN calls, to size the recorder's columns up front. */
function expectedRuns(input: VcpuSessionInput): number {
  return input.scenarios.reduce((n, s) => n + Object.values(programFor(s, input.exits).expect).reduce((a, b) => a + b, 0), 16);
}

export function runVcpuSession(input: VcpuSessionInput): VcpuSessionOutput {
  const rec = input.log ? new GroundTruthRecorder(expectedRuns(input)) : null;
  const prevObserver = setKvmObserver(rec);
  const ioctl0 = ioctlCount();
  const stop = new Int32Array(input.stop);
  const out: VcpuSessionOutput = {
    vcpu: input.vcpu, tid: currentTid(), fd: -1, userAddr: null, mmapSize: input.runSize,
    counts: {}, scenarios: [], ioctls: 0, layout: [], log: null, error: null,
  };
  const vm = Vm.fromRawFd(input.vmFd, input.runSize); // borrowed: the main thread owns the VM fd
  let vcpu: Vcpu | null = null;
  try {
    vcpu = vm.createVcpu(input.vcpu, input.runLayout);
    out.fd = vcpu.fd;
    out.userAddr = `0x${vcpu.kvmRun.userAddr.toString(16)}`;
    const reset = vcpu.getSregs();
    for (const scenario of input.scenarios) {
      const res =
        scenario === 'layout'
          ? layoutVcpu(vcpu, reset, input.msrs, rec, stop)
          : { observations: [], loop: runProgram(vcpu, reset, programFor(scenario, input.exits), stop) };
      out.layout.push(...res.observations);
      out.scenarios.push({ scenario, counts: res.loop.counts, runs: res.loop.runs, loopNs: res.loop.loopNs });
      for (const [k, n] of Object.entries(res.loop.counts)) out.counts[k] = (out.counts[k] ?? 0) + n;
    }
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    out.error = { name: e.name, message: e.message, scenario: err instanceof GuestFault ? err.scenario : undefined };
    stop[0] = 1; // tell the other vCPUs
  } finally {
    try {
      vcpu?.close();
      vm.close();
    } catch (err) {
      out.error ??= { name: 'Error', message: `closing vCPU ${input.vcpu}: ${(err as Error).message}` };
    }
    setKvmObserver(prevObserver);
  }
  out.ioctls = ioctlCount() - ioctl0;
  out.log = rec ? rec.export() : null;
  return out;
}
