/**
 * Does this host run a 64-bit long-mode guest? Tried, not assumed: a separate small VM gets identity-mapped
 * 2 MiB page tables, the supported CPUID, CR0.PG|PE, CR4.PAE, EFER.LME|LMA and a 64-bit code segment, then
 * runs `out dx, al; hlt`. Long mode works when exactly that IO exit and HLT arrive and EFER.LMA is still set.
 */
import { SyscallError } from '../ffi/errors.js';
import { MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, memoryView, mmap, munmap, PROT_READ, PROT_WRITE } from '../ffi/libc.js';
import { KVM_EXIT } from '../kvm/abi/exit-reasons.generated.js';
import { exitReasonName } from '../kvm/abi/ioctl-table.js';
import type { KvmSegment } from '../kvm/abi/structs.js';
import type { Kvm } from '../kvm/system.js';
import type { Vcpu } from '../kvm/vcpu.js';
import type { Vm } from '../kvm/vm.js';
import { PORT_OUT } from './programs.js';

export interface LongModeResult {
  supported: boolean;
  /** What happened, in a few words ("IO and HLT exits in 64-bit mode", "KVM_SET_SREGS: EINVAL", ...). */
  detail: string;
}

const MEM = 0x200000;
const PML4 = 0x2000;
const PDPT = 0x3000;
const PD = 0x4000;
const CODE = 0x1000;
const CR0_PE = 1n, CR0_MP = 2n, CR0_ET = 0x10n, CR0_NE = 0x20n, CR0_PG = 0x80000000n;
const CR4_PAE = 0x20n;
const EFER_LME = 0x100n, EFER_LMA = 0x400n;

export function probeLongMode(kvm: Kvm): LongModeResult {
  let vm: Vm | null = null;
  let vcpu: Vcpu | null = null;
  let mem = 0n;
  try {
    vm = kvm.createVm();
    mem = mmap(0n, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    const dv = new DataView(memoryView(mem, 0x5000));
    dv.setBigUint64(PML4, BigInt(PDPT) | 3n, true); // present | writable
    dv.setBigUint64(PDPT, BigInt(PD) | 3n, true);
    dv.setBigUint64(PD, 0x83n, true); // 2 MiB page at 0: present | writable | PS
    dv.setUint8(CODE, 0xee); // out dx, al
    dv.setUint8(CODE + 1, 0xf4); // hlt
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0n, memory_size: BigInt(MEM), userspace_addr: mem });
    vcpu = vm.createVcpu(0);
    vcpu.setCpuid2(kvm.getSupportedCpuid());
    const s = vcpu.getSregs();
    const seg = (selector: number, type: number, code: boolean): KvmSegment => ({
      base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db: code ? 0 : 1, s: 1, l: code ? 1 : 0, g: 1, avl: 0, unusable: 0, padding: 0,
    });
    s.cs = seg(0x8, 11, true);
    s.ds = s.es = s.fs = s.gs = s.ss = seg(0x10, 3, false);
    s.cr3 = BigInt(PML4);
    s.cr4 = CR4_PAE;
    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
    s.efer = EFER_LME | EFER_LMA;
    vcpu.setSregs(s);
    vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(CODE), rflags: 2n, rdx: BigInt(PORT_OUT), rsp: 0x8000n });
    const first = vcpu.run();
    const second = first === KVM_EXIT.IO ? vcpu.run() : -1;
    const lma = (vcpu.getSregs().efer & EFER_LMA) !== 0n;
    if (exitReasonName(first) === 'IO' && vcpu.kvmRun.ioPort === PORT_OUT && exitReasonName(second) === 'HLT' && lma) {
      return { supported: true, detail: 'IO and HLT exits from a 64-bit code segment with EFER.LMA set' };
    }
    const got = [first, second].filter((x) => x >= 0).map(exitReasonName).join(', then ');
    return { supported: false, detail: `64-bit guest exited with ${got}${lma ? '' : ', EFER.LMA clear'}` };
  } catch (err) {
    if (err instanceof SyscallError) return { supported: false, detail: err.message };
    throw err;
  } finally {
    vcpu?.close();
    vm?.close();
    if (mem) munmap(mem, MEM);
  }
}
