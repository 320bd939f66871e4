/**
 * Where each vCPU's struct kvm_run lives, joined from two records: the user address from the vCPU fd's
 * mmap at offset 0, the kernel address from its KVM_RUN records. A kvm_run record is emitted once, when
 * both halves (and the vCPU id) are known; what is still half-known at the end of a trace or of a process
 * is emitted as it is.
 */
import { hex64 } from '../cdata/values.js';
import type { ProcessState, RunInfo } from './processes.js';
import type { KvmRunRecord } from './records.js';

/**
 * A KVM_RUN of vCPU fd `fd` reported kvm_run's kernel address (a u64 at `kaddrOff`): the kvm_run record,
 * when this completes the join.
 */
export function kernelAddrSeen(p: ProcessState, fd: number, vcpu: number | null, dv: DataView, kaddrOff: number): KvmRunRecord | undefined {
  const lo = dv.getUint32(kaddrOff, true);
  const hi = dv.getUint32(kaddrOff + 4, true);
  let run = p.runs.get(fd);
  if (run && run.kLo === lo && run.kHi === hi && (run.emitted || run.user_addr === null)) return undefined; // common case
  run ??= p.run(fd);
  if (vcpu !== null) run.vcpu = vcpu;
  if (lo !== 0 || hi !== 0) {
    run.kLo = lo;
    run.kHi = hi;
    run.kernel_addr = hex64(dv, kaddrOff);
  }
  return joined(p.pid, run);
}

/** vCPU fd `fd` was mapped at `userAddr` ("0x…", `size` bytes): the kvm_run record, when this completes the join. */
export function userAddrSeen(p: ProcessState, fd: number, vcpu: number | null, userAddr: string, size: number): KvmRunRecord | undefined {
  const run = p.run(fd);
  if (vcpu !== null) run.vcpu = vcpu;
  run.user_addr = userAddr;
  run.mmap_size = size;
  return joined(p.pid, run);
}

/** The kvm_run records of `p` not emitted yet that know at least one address (end of trace or process). */
export function unjoinedRuns(p: ProcessState): KvmRunRecord[] {
  const out: KvmRunRecord[] = [];
  for (const run of p.runs.values()) {
    if (run.emitted || (run.kernel_addr === null && run.user_addr === null)) continue;
    run.emitted = true;
    out.push(runRecord(p.pid, run));
  }
  return out;
}

function joined(pid: number, run: RunInfo): KvmRunRecord | undefined {
  if (run.emitted || run.kernel_addr === null || run.user_addr === null || run.vcpu === null) return undefined;
  run.emitted = true;
  return runRecord(pid, run);
}

function runRecord(pid: number, run: RunInfo): KvmRunRecord {
  return {
    type: 'kvm_run',
    pid,
    vcpu: run.vcpu ?? -1,
    fd: run.fd,
    kernel_addr: run.kernel_addr,
    user_addr: run.user_addr,
    mmap_size: run.mmap_size,
  };
}
