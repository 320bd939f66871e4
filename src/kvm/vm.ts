/**
 * Vm: a VM fd handle, created only by Kvm.createVm (or wrapped with fromRawFd, e.g. in a vCPU worker
 * thread that borrows the VM fd its parent owns). It sets up guest memory and creates vCPUs; only it
 * creates a Vcpu. Each method is one ioctl; failures throw SyscallError whose op is the ioctl name.
 *
 *   const vm = kvm.createVm();
 *   vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0n, memory_size: 0x10000n, userspace_addr: addr });
 *   const vcpu = vm.createVcpu(0);
 */
import { capNumber, ioctlByName, type Cap } from './abi/ioctl-table.js';
import { STRUCTS, type KvmClockData, type KvmUserspaceMemoryRegion } from './abi/structs.js';
import { KvmHandle } from './handle.js';
import type { KvmRunLayout } from './kvm-run.js';
import { notifyFd } from './observer.js';
import { Vcpu } from './vcpu.js';

const KVM_CHECK_EXTENSION = ioctlByName('KVM_CHECK_EXTENSION');
const KVM_CREATE_VCPU = ioctlByName('KVM_CREATE_VCPU');
const KVM_SET_USER_MEMORY_REGION = ioctlByName('KVM_SET_USER_MEMORY_REGION');
const KVM_SET_TSS_ADDR = ioctlByName('KVM_SET_TSS_ADDR');
const KVM_SET_IDENTITY_MAP_ADDR = ioctlByName('KVM_SET_IDENTITY_MAP_ADDR');
const KVM_CREATE_IRQCHIP = ioctlByName('KVM_CREATE_IRQCHIP');
const KVM_IRQ_LINE = ioctlByName('KVM_IRQ_LINE');
const KVM_CREATE_PIT2 = ioctlByName('KVM_CREATE_PIT2');
const KVM_GET_CLOCK = ioctlByName('KVM_GET_CLOCK');
const KVM_ENABLE_CAP = ioctlByName('KVM_ENABLE_CAP');

export class Vm extends KvmHandle {
  /** KVM_GET_VCPU_MMAP_SIZE of the system the VM came from: how much of each vCPU fd to map. */
  readonly runSize: number;

  private constructor(fd: number, runSize: number, owned: boolean) {
    super(fd, 'vm', owned, null);
    this.runSize = runSize;
  }

  /** Wrap a VM fd; `owned` (default false) decides whether close() closes it. */
  static fromRawFd(fd: number, runSize: number, opts: { owned?: boolean } = {}): Vm {
    return new Vm(fd, runSize, opts.owned ?? false);
  }

  /** KVM_CHECK_EXTENSION on the VM fd (per-VM answers, e.g. KVM_CAP_NR_MEMSLOTS). */
  checkExtension(cap: Cap): number {
    return this.call(KVM_CHECK_EXTENSION, capNumber(cap));
  }

  /** KVM_SET_USER_MEMORY_REGION: map host memory at a guest-physical range (memory_size 0 deletes). */
  setUserMemoryRegion(region: KvmUserspaceMemoryRegion, at?: bigint): void {
    const a = this.argOf(STRUCTS.kvm_userspace_memory_region, { ...region }, at);
    this.call(KVM_SET_USER_MEMORY_REGION, a.addr);
  }

  /**
   * KVM_CREATE_VCPU with `id`, then mmap of its kvm_run. Call it on the thread that will run the vCPU.
   * `layout` lets a worker reuse a kvm_run layout computed once by its parent.
   */
  createVcpu(id: number, layout?: KvmRunLayout): Vcpu {
    const fd = this.call(KVM_CREATE_VCPU, id);
    notifyFd('open', fd, 'vcpu', id);
    return Vcpu.fromRawFd(fd, id, this.runSize, { owned: true, layout });
  }

  /** KVM_CREATE_IRQCHIP: in-kernel PIC + IOAPIC (+ LAPIC per vCPU); HLT is then handled in the kernel. */
  createIrqchip(): void {
    this.call(KVM_CREATE_IRQCHIP, 0);
  }

  /** KVM_IRQ_LINE: drive interrupt line `irq` of the in-kernel irqchip to `level`. */
  irqLine(irq: number, level: number, at?: bigint): void {
    const a = this.argOf(STRUCTS.kvm_irq_level, { '': { irq }, level }, at);
    this.call(KVM_IRQ_LINE, a.addr);
  }

  /** KVM_CREATE_PIT2: in-kernel i8254 PIT (needs the irqchip). */
  createPit2(flags = 0, at?: bigint): void {
    const a = this.argOf(STRUCTS.kvm_pit_config, { flags }, at);
    this.call(KVM_CREATE_PIT2, a.addr);
  }

  /** KVM_SET_TSS_ADDR: a 3-page guest-physical range KVM may use for real-mode emulation on Intel VMX. */
  setTssAddr(addr: number): void {
    this.call(KVM_SET_TSS_ADDR, addr);
  }

  /** KVM_SET_IDENTITY_MAP_ADDR: guest-physical page for the VMX identity page table (a __u64 argument). */
  setIdentityMapAddr(addr: bigint, at?: bigint): void {
    const a = this.arg(8, at);
    a.dv.setBigUint64(0, addr, true);
    this.call(KVM_SET_IDENTITY_MAP_ADDR, a.addr);
  }

  /** KVM_GET_CLOCK: the VM's kvmclock value. */
  getClock(at?: bigint): KvmClockData {
    const a = this.arg(STRUCTS.kvm_clock_data.size, at);
    this.call(KVM_GET_CLOCK, a.addr);
    return this.read<KvmClockData>(STRUCTS.kvm_clock_data, a);
  }

  /** KVM_ENABLE_CAP on the VM fd with up to four arguments. */
  enableCap(cap: Cap, args: bigint[] = [], flags = 0, at?: bigint): void {
    const a = this.argOf(STRUCTS.kvm_enable_cap, { cap: capNumber(cap), flags, args }, at);
    this.call(KVM_ENABLE_CAP, a.addr);
  }
}
