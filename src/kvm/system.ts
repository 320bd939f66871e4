/**
 * Kvm: the system handle (/dev/kvm), rust-vmm kvm-ioctls style. It answers system-level questions (API
 * version, capabilities, kvm_run mapping size, supported CPUID, MSR index list) and creates VMs; only it
 * creates a Vm. Each method is one ioctl; failures throw SyscallError whose op is the ioctl name.
 *
 *   const kvm = Kvm.open();            // or Kvm.open('/dev/kvm'); env KVM_TRACE_KVM_DEV overrides the default
 *   kvm.apiVersion();                  // 12
 *   const vm = kvm.createVm();
 *   ...; vm.close(); kvm.close();
 */
import { O_CLOEXEC, O_RDWR, open } from '../ffi/libc.js';
import { capNumber, ioctlByName, type Cap } from './abi/ioctl-table.js';
import { STRUCTS, type KvmCpuidEntry2 } from './abi/structs.js';
import { KvmHandle } from './handle.js';
import { notifyFd } from './observer.js';
import { Vm } from './vm.js';

const KVM_GET_API_VERSION = ioctlByName('KVM_GET_API_VERSION');
const KVM_CREATE_VM = ioctlByName('KVM_CREATE_VM');
const KVM_CHECK_EXTENSION = ioctlByName('KVM_CHECK_EXTENSION');
const KVM_GET_VCPU_MMAP_SIZE = ioctlByName('KVM_GET_VCPU_MMAP_SIZE');
const KVM_GET_SUPPORTED_CPUID = ioctlByName('KVM_GET_SUPPORTED_CPUID');
const KVM_GET_MSR_INDEX_LIST = ioctlByName('KVM_GET_MSR_INDEX_LIST');

/** The KVM device path: $KVM_TRACE_KVM_DEV when set (tests point it at a missing file), else /dev/kvm. */
export function defaultKvmPath(): string {
  return process.env.KVM_TRACE_KVM_DEV || '/dev/kvm';
}

export class Kvm extends KvmHandle {
  readonly path: string;

  private constructor(fd: number, path: string, owned: boolean) {
    super(fd, 'system', owned, null);
    this.path = path;
  }

  /** Open the KVM device (O_RDWR | O_CLOEXEC). Throws SyscallError("open <path>") e.g. ENOENT. */
  static open(path: string = defaultKvmPath()): Kvm {
    const fd = open(path, O_RDWR | O_CLOEXEC);
    notifyFd('open', fd, 'system', null);
    return new Kvm(fd, path, true);
  }

  /** Wrap an fd that refers to /dev/kvm; `owned` decides whether close() closes it. */
  static fromRawFd(fd: number, opts: { owned?: boolean } = {}): Kvm {
    return new Kvm(fd, '', opts.owned ?? false);
  }

  /** KVM_GET_API_VERSION: 12 on every kernel since 2.6.22. */
  apiVersion(): number {
    return this.call(KVM_GET_API_VERSION, 0);
  }

  /** KVM_CHECK_EXTENSION on /dev/kvm: 0 when absent, else 1 or a cap-specific value. */
  checkExtension(cap: Cap): number {
    return this.call(KVM_CHECK_EXTENSION, capNumber(cap));
  }

  /** KVM_GET_VCPU_MMAP_SIZE: bytes to mmap from a vCPU fd for kvm_run (plus PIO data, coalesced MMIO). */
  vcpuMmapSize(): number {
    return this.call(KVM_GET_VCPU_MMAP_SIZE, 0);
  }

  /** KVM_CREATE_VM with machine `type` (0 = default): the new VM handle. */
  createVm(type = 0): Vm {
    const runSize = this.vcpuMmapSize();
    const fd = this.call(KVM_CREATE_VM, type);
    notifyFd('open', fd, 'vm', null);
    return Vm.fromRawFd(fd, runSize, { owned: true });
  }

  /** KVM_GET_SUPPORTED_CPUID: the CPUID entries KVM can expose (room for `max`; E2BIG if too few). */
  getSupportedCpuid(max = 256, at?: bigint): KvmCpuidEntry2[] {
    const head = STRUCTS.kvm_cpuid2;
    const entry = STRUCTS.kvm_cpuid_entry2;
    const a = this.argOf(head, { nent: max }, at, head.size + max * entry.size);
    this.call(KVM_GET_SUPPORTED_CPUID, a.addr);
    const n = a.dv.getUint32(0, true);
    return Array.from({ length: n }, (_, i) => this.read<KvmCpuidEntry2>(entry, a, head.size + i * entry.size));
  }

  /** KVM_GET_MSR_INDEX_LIST: the MSR indices KVM_GET_MSRS/KVM_SET_MSRS accept (room for `max`). */
  getMsrIndexList(max = 1024, at?: bigint): number[] {
    const head = STRUCTS.kvm_msr_list;
    const a = this.argOf(head, { nmsrs: max }, at, head.size + max * 4);
    this.call(KVM_GET_MSR_INDEX_LIST, a.addr);
    const n = a.dv.getUint32(0, true);
    return Array.from({ length: n }, (_, i) => a.dv.getUint32(head.size + 4 * i, true));
  }
}
