/**
 * Vcpu: a vCPU fd handle with its mmapped `struct kvm_run`, created only by Vm.createVcpu (or wrapped
 * with fromRawFd). KVM expects a vCPU's ioctls from the thread that created it, so create it on the thread
 * that runs it. Each method is one ioctl; failures throw SyscallError whose op is the ioctl name.
 *
 *   const vcpu = vm.createVcpu(0);
 *   vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000n, rflags: 2n });
 *   for (;;) if (vcpu.run() === KVM_EXIT.HLT) break;   // exit reason straight from kvm_run
 *
 * run() is the hot path: one ioctl through the fixed-arity binding and one typed-array load.
 */
import { SyscallError } from '../ffi/errors.js';
import { close as closeFd, MAP_SHARED, mmap, munmap, PROT_READ, PROT_WRITE } from '../ffi/libc.js';
import { ioctlByName } from './abi/ioctl-table.js';
import {
  STRUCTS,
  type KvmCpuidEntry2,
  type KvmDebugregs,
  type KvmFpu,
  type KvmMsrEntry,
  type KvmRegs,
  type KvmSregs,
  type KvmVcpuEvents,
  type KvmXcrs,
} from './abi/structs.js';
import { encode } from '../cdata/layout.js';
import { KvmHandle } from './handle.js';
import { KvmRun, type KvmRunLayout } from './kvm-run.js';
import { kvmIoctl, notifyFd, notifyKvmRun } from './observer.js';

const KVM_RUN = ioctlByName('KVM_RUN');
const KVM_GET_REGS = ioctlByName('KVM_GET_REGS');
const KVM_SET_REGS = ioctlByName('KVM_SET_REGS');
const KVM_GET_SREGS = ioctlByName('KVM_GET_SREGS');
const KVM_SET_SREGS = ioctlByName('KVM_SET_SREGS');
const KVM_GET_FPU = ioctlByName('KVM_GET_FPU');
const KVM_SET_FPU = ioctlByName('KVM_SET_FPU');
const KVM_GET_MSRS = ioctlByName('KVM_GET_MSRS');
const KVM_SET_MSRS = ioctlByName('KVM_SET_MSRS');
const KVM_SET_CPUID2 = ioctlByName('KVM_SET_CPUID2');
const KVM_GET_VCPU_EVENTS = ioctlByName('KVM_GET_VCPU_EVENTS');
const KVM_SET_VCPU_EVENTS = ioctlByName('KVM_SET_VCPU_EVENTS');
const KVM_GET_DEBUGREGS = ioctlByName('KVM_GET_DEBUGREGS');
const KVM_SET_DEBUGREGS = ioctlByName('KVM_SET_DEBUGREGS');
const KVM_GET_XCRS = ioctlByName('KVM_GET_XCRS');
const KVM_SET_XCRS = ioctlByName('KVM_SET_XCRS');
const KVM_GET_MP_STATE = ioctlByName('KVM_GET_MP_STATE');
const KVM_SET_MP_STATE = ioctlByName('KVM_SET_MP_STATE');

const S = STRUCTS;

export class Vcpu extends KvmHandle {
  readonly id: number;
  /** The mmapped kvm_run (a detached zero buffer when the handle was wrapped without a mapping). */
  readonly kvmRun: KvmRun;
  readonly #words: Uint32Array;
  readonly #exitIndex: number;

  private constructor(fd: number, id: number, run: KvmRun, owned: boolean) {
    super(fd, 'vcpu', owned, id);
    this.id = id;
    this.kvmRun = run;
    this.#words = run.words;
    this.#exitIndex = run.exitReasonIndex;
  }

  /**
   * Wrap a vCPU fd and, when `runSize` > 0, mmap its kvm_run (MAP_SHARED at offset 0). On a mapping
   * failure an owned fd is closed before the error propagates.
   */
  static fromRawFd(fd: number, id: number, runSize: number, opts: { owned?: boolean; layout?: KvmRunLayout } = {}): Vcpu {
    const owned = opts.owned ?? false;
    let run: KvmRun;
    try {
      const addr = runSize > 0 ? mmap(0n, runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : 0n;
      run = new KvmRun(addr, runSize, opts.layout);
    } catch (err) {
      if (owned) {
        closeFd(fd);
        notifyFd('close', fd, 'vcpu', id);
      }
      throw err;
    }
    if (runSize > 0) notifyKvmRun(id, fd, run.userAddr, runSize);
    return new Vcpu(fd, id, run, owned);
  }

  protected override releaseMappings(): void {
    if (this.kvmRun.userAddr !== 0n) munmap(this.kvmRun.userAddr, this.kvmRun.mmapSize);
  }

  /** KVM_RUN: enter the guest until the next exit; returns kvm_run.exit_reason (KVM_EXIT_*). */
  run(): number {
    const r = kvmIoctl(this.fd, 'vcpu', this.id, KVM_RUN, 0);
    if (r < 0) throw new SyscallError('KVM_RUN', -r);
    return this.#words[this.#exitIndex];
  }

  /** KVM_RUN without throwing: the exit reason (>= 0), or -errno (e.g. -EINTR after a signal). */
  runRaw(): number {
    const r = kvmIoctl(this.fd, 'vcpu', this.id, KVM_RUN, 0);
    return r < 0 ? r : this.#words[this.#exitIndex];
  }

  /** KVM_GET_REGS: general-purpose registers, rip and rflags. */
  getRegs(at?: bigint): KvmRegs {
    const a = this.arg(S.kvm_regs.size, at);
    this.call(KVM_GET_REGS, a.addr);
    return this.read<KvmRegs>(S.kvm_regs, a);
  }

  /** KVM_SET_REGS. */
  setRegs(regs: KvmRegs, at?: bigint): void {
    this.call(KVM_SET_REGS, this.argOf(S.kvm_regs, regs, at).addr);
  }

  /** KVM_GET_SREGS: segment, descriptor-table and control registers, EFER, APIC base. */
  getSregs(at?: bigint): KvmSregs {
    const a = this.arg(S.kvm_sregs.size, at);
    this.call(KVM_GET_SREGS, a.addr);
    return this.read<KvmSregs>(S.kvm_sregs, a);
  }

  /** KVM_SET_SREGS. */
  setSregs(sregs: KvmSregs, at?: bigint): void {
    this.call(KVM_SET_SREGS, this.argOf(S.kvm_sregs, sregs as never, at).addr);
  }

  /** KVM_GET_FPU: x87/SSE state in fxsave form. */
  getFpu(at?: bigint): KvmFpu {
    const a = this.arg(S.kvm_fpu.size, at);
    this.call(KVM_GET_FPU, a.addr);
    return this.read<KvmFpu>(S.kvm_fpu, a);
  }

  /** KVM_SET_FPU. */
  setFpu(fpu: KvmFpu, at?: bigint): void {
    this.call(KVM_SET_FPU, this.argOf(S.kvm_fpu, fpu as never, at).addr);
  }

  /**
   * KVM_GET_MSRS: the values of `indices`. The kvm_msrs header (nmsrs, pad) is followed in the same buffer
   * by its entries; the kernel returns how many it read, which may be fewer than asked.
   */
  getMsrs(indices: number[], at?: bigint): KvmMsrEntry[] {
    const head = S.kvm_msrs;
    const ent = S.kvm_msr_entry;
    const a = this.argOf(head, { nmsrs: indices.length }, at, head.size + indices.length * ent.size);
    indices.forEach((index, i) => a.dv.setUint32(head.size + i * ent.size, index, true));
    const n = this.call(KVM_GET_MSRS, a.addr);
    return Array.from({ length: n }, (_, i) => this.read<KvmMsrEntry>(ent, a, head.size + i * ent.size));
  }

  /** KVM_SET_MSRS: returns how many entries the kernel set (it stops at the first it refuses). */
  setMsrs(entries: KvmMsrEntry[], at?: bigint): number {
    const head = S.kvm_msrs;
    const ent = S.kvm_msr_entry;
    const a = this.argOf(head, { nmsrs: entries.length }, at, head.size + entries.length * ent.size);
    entries.forEach((e, i) => encode(ent, a.dv, { ...e }, head.size + i * ent.size));
    return this.call(KVM_SET_MSRS, a.addr);
  }

  /** KVM_SET_CPUID2: the CPUID the guest sees (typically Kvm.getSupportedCpuid()). */
  setCpuid2(entries: KvmCpuidEntry2[], at?: bigint): void {
    const head = S.kvm_cpuid2;
    const ent = S.kvm_cpuid_entry2;
    const a = this.argOf(head, { nent: entries.length }, at, head.size + entries.length * ent.size);
    entries.forEach((e, i) => encode(ent, a.dv, { ...e }, head.size + i * ent.size));
    this.call(KVM_SET_CPUID2, a.addr);
  }

  /** KVM_GET_VCPU_EVENTS: pending exceptions, interrupts, NMI, SMI state. */
  getVcpuEvents(at?: bigint): KvmVcpuEvents {
    const a = this.arg(S.kvm_vcpu_events.size, at);
    this.call(KVM_GET_VCPU_EVENTS, a.addr);
    return this.read<KvmVcpuEvents>(S.kvm_vcpu_events, a);
  }

  /** KVM_SET_VCPU_EVENTS. */
  setVcpuEvents(events: KvmVcpuEvents, at?: bigint): void {
    this.call(KVM_SET_VCPU_EVENTS, this.argOf(S.kvm_vcpu_events, events as never, at).addr);
  }

  /** KVM_GET_DEBUGREGS: DR0-3, DR6, DR7. */
  getDebugregs(at?: bigint): KvmDebugregs {
    const a = this.arg(S.kvm_debugregs.size, at);
    this.call(KVM_GET_DEBUGREGS, a.addr);
    return this.read<KvmDebugregs>(S.kvm_debugregs, a);
  }

  /** KVM_SET_DEBUGREGS. */
  setDebugregs(regs: KvmDebugregs, at?: bigint): void {
    this.call(KVM_SET_DEBUGREGS, this.argOf(S.kvm_debugregs, regs as never, at).addr);
  }

  /** KVM_GET_XCRS: extended control registers (XCR0). */
  getXcrs(at?: bigint): KvmXcrs {
    const a = this.arg(S.kvm_xcrs.size, at);
    this.call(KVM_GET_XCRS, a.addr);
    return this.read<KvmXcrs>(S.kvm_xcrs, a);
  }

  /** KVM_SET_XCRS. */
  setXcrs(xcrs: KvmXcrs, at?: bigint): void {
    this.call(KVM_SET_XCRS, this.argOf(S.kvm_xcrs, xcrs as never, at).addr);
  }

  /** KVM_GET_MP_STATE: KVM_MP_STATE_RUNNABLE (0), HALTED (3), ... */
  getMpState(at?: bigint): number {
    const a = this.arg(S.kvm_mp_state.size, at);
    this.call(KVM_GET_MP_STATE, a.addr);
    return a.dv.getUint32(0, true);
  }

  /** KVM_SET_MP_STATE. */
  setMpState(state: number, at?: bigint): void {
    this.call(KVM_SET_MP_STATE, this.argOf(S.kvm_mp_state, { mp_state: state }, at).addr);
  }
}
