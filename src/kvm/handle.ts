/**
 * What the three fd-level handles (Kvm, Vm, Vcpu) share: the fd, its kind, ioctl issue with the ioctl's
 * name in the error, argument memory, and an idempotent close.
 *
 * Argument structs are built in memory the handle owns (an anonymous mapping, so its address is stable:
 * JS heap memory can move under the GC between taking its address and the ioctl). Every method also takes
 * `at`, the address of caller-provided memory, so a caller can choose exactly where the kernel reads and
 * writes the argument (the reference guest's `layout` scenario places buffers misaligned, across cache lines
 * and pages). The caller guarantees `at` points at enough writable bytes.
 */
import { SyscallError } from '../ffi/errors.js';
import {
  close as closeFd,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  memoryView,
  mmap,
  munmap,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
} from '../ffi/libc.js';
import type { FdKind, IoctlDef } from './abi/ioctl-table.js';
import { decode, encode, type CValue, type RecordType } from '../cdata/layout.js';
import { kvmIoctl, notifyFd } from './observer.js';

/** Where an argument lives for one call: its address and a DataView over exactly its bytes. */
export interface ArgBuf {
  addr: bigint;
  dv: DataView;
}

export abstract class KvmHandle {
  #fd: number;
  readonly kind: FdKind;
  readonly owned: boolean;
  /** vCPU id for vCPU handles (what the observer reports), else null. */
  protected readonly vcpuId: number | null;
  #scratch: { addr: bigint; size: number } | null = null;

  protected constructor(fd: number, kind: FdKind, owned: boolean, vcpuId: number | null) {
    this.#fd = fd;
    this.kind = kind;
    this.owned = owned;
    this.vcpuId = vcpuId;
  }

  /** The raw fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Issue `def` with `arg`; returns the non-negative result or throws SyscallError named after the ioctl. */
  protected call(def: IoctlDef, arg: bigint | number = 0): number {
    const r = kvmIoctl(this.#fd, this.kind, this.vcpuId, def, arg);
    if (r < 0) throw new SyscallError(def.name, -r);
    return r;
  }

  /** `size` bytes of argument memory: at `at` when given, else in the handle's own mapping. Zeroed. */
  protected arg(size: number, at?: bigint): ArgBuf {
    const addr = at ?? this.#scratchAddr(size);
    const mem = memoryView(addr, Math.max(size, 1));
    new Uint8Array(mem).fill(0);
    return { addr, dv: new DataView(mem) };
  }

  /** Encode `value` as `type` into fresh argument memory. */
  protected argOf(type: RecordType, value: CValue, at?: bigint, size = type.size): ArgBuf {
    const a = this.arg(size, at);
    encode(type, a.dv, value);
    return a;
  }

  /** Decode `type` from argument memory. */
  protected read<T>(type: RecordType, a: ArgBuf, off = 0): T {
    return decode(type, a.dv, off) as unknown as T;
  }

  #scratchAddr(size: number): bigint {
    if (this.#scratch && this.#scratch.size >= size) return this.#scratch.addr;
    this.#releaseScratch();
    const len = Math.max(PAGE_SIZE, Math.ceil(size / PAGE_SIZE) * PAGE_SIZE);
    this.#scratch = { addr: mmap(0n, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), size: len };
    return this.#scratch.addr;
  }

  #releaseScratch(): void {
    if (!this.#scratch) return;
    const s = this.#scratch;
    this.#scratch = null;
    munmap(s.addr, s.size);
  }

  /** Subclasses release what they map (kvm_run) here; called once by close(). */
  protected releaseMappings(): void {}

  /** Release the fd (when owned) and every mapping. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    try {
      this.releaseMappings();
      this.#releaseScratch();
    } finally {
      if (this.owned) {
        closeFd(fd);
        notifyFd('close', fd, this.kind, this.vcpuId);
      }
    }
  }
}
