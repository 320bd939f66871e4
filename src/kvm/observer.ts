/**
 * The one path every KVM handle (Kvm, Vm, Vcpu) issues its ioctls through, with an optional observer.
 *
 * The reference guest's ground-truth log is built from this hook: it sees every ioctl a handle makes, with
 * CLOCK_MONOTONIC ns before and after (process.hrtime.bigint() is CLOCK_MONOTONIC on Linux, the clock
 * bpf_ktime_get_ns and the tracer use), the thread id, fd, fd kind, request, argument and outcome. It is per
 * thread (each worker_thread has its own module instance) and costs one null check when unset, because the
 * KVM_RUN loop goes through here too.
 */
import { gettid, ioctlRaw } from '../ffi/libc.js';
import type { FdKind, IoctlDef } from './abi/ioctl-table.js';

/** One finished ioctl. The observer receives the same (reused) object every time: copy what you keep. */
export interface IoctlCall {
  t0: bigint;
  t1: bigint;
  tid: number;
  fd: number;
  fdKind: FdKind;
  /** vCPU id for vCPU fds, else null. */
  vcpu: number | null;
  cmd: number;
  name: string;
  /** The raw third argument: a buffer address, or the integer value for _IO ioctls that take one. */
  arg: bigint;
  /** Argument size encoded in the request number. */
  size: number;
  /** The syscall's return value as the kernel gave it: >= 0, or -errno on failure. */
  ret: number;
  /** Positive errno on failure, 0 on success. */
  errno: number;
}

export interface KvmObserver {
  /** After every ioctl a handle issues on this thread. */
  ioctl(call: Readonly<IoctlCall>): void;
  /** A handle gained an fd (open of /dev/kvm, fd returned by KVM_CREATE_*) or closed one. */
  fd?(op: 'open' | 'close', fd: number, kind: FdKind, vcpu: number | null, tNs: bigint): void;
  /** A vCPU's struct kvm_run was mapped at `userAddr`. */
  kvmRun?(vcpu: number, fd: number, userAddr: bigint, mmapSize: number): void;
}

let observer: KvmObserver | null = null;
let issued = 0;
let threadId = 0;
const call: IoctlCall = {
  t0: 0n, t1: 0n, tid: 0, fd: -1, fdKind: 'system', vcpu: null, cmd: 0, name: '', arg: 0n, size: 0, ret: 0, errno: 0,
};

/** Install (or with null remove) this thread's observer; returns the previous one. */
export function setKvmObserver(next: KvmObserver | null): KvmObserver | null {
  const prev = observer;
  observer = next;
  if (next && threadId === 0) threadId = gettid();
  return prev;
}

/** How many ioctls the handles on this thread have issued (observed or not). */
export function ioctlCount(): number {
  return issued;
}

/** The current thread's id (cached: it never changes for a thread). */
export function currentTid(): number {
  if (threadId === 0) threadId = gettid();
  return threadId;
}

/**
 * Issue `def` on `fd` with `arg` (an address as bigint, or an integer value). Returns the result, or -errno.
 * Never throws: the handles turn a negative result into SyscallError(def.name).
 */
export function kvmIoctl(fd: number, kind: FdKind, vcpu: number | null, def: IoctlDef, arg: bigint | number): number {
  issued++;
  if (observer === null) return ioctlRaw(fd, def.cmd, arg);
  return observedIoctl(observer, fd, kind, vcpu, def, arg);
}

function observedIoctl(
  obs: KvmObserver,
  fd: number,
  kind: FdKind,
  vcpu: number | null,
  def: IoctlDef,
  arg: bigint | number,
): number {
  const t0 = process.hrtime.bigint();
  const ret = ioctlRaw(fd, def.cmd, arg);
  const t1 = process.hrtime.bigint();
  call.t0 = t0;
  call.t1 = t1;
  call.tid = threadId;
  call.fd = fd;
  call.fdKind = kind;
  call.vcpu = vcpu;
  call.cmd = def.cmd;
  call.name = def.name;
  call.arg = typeof arg === 'bigint' ? arg : BigInt(arg);
  call.size = def.size;
  call.ret = ret;
  call.errno = ret < 0 ? -ret : 0;
  obs.ioctl(call);
  return ret;
}

/** Tell the observer about an fd a handle opened or closed. */
export function notifyFd(op: 'open' | 'close', fd: number, kind: FdKind, vcpu: number | null): void {
  observer?.fd?.(op, fd, kind, vcpu, process.hrtime.bigint());
}

/** Tell the observer where a vCPU's kvm_run was mapped. */
export function notifyKvmRun(vcpu: number, fd: number, userAddr: bigint, mmapSize: number): void {
  observer?.kvmRun?.(vcpu, fd, userAddr, mmapSize);
}
