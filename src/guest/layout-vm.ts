/**
 * The VM and system half of the `layout` scenario (main thread, before the vCPUs exist): memory slots
 * 1..5 are set with KVM_SET_USER_MEMORY_REGION from buffers at each placement (the guest later reads them,
 * which proves the kernel used what it copied), and the nested-buffer system ioctls KVM_GET_SUPPORTED_CPUID
 * and KVM_GET_MSR_INDEX_LIST are read at each placement and compared with the first read. KVM_CHECK_EXTENSION
 * takes no buffer: it is recorded with an empty buffer list.
 */
import { PAGE_SIZE } from '../ffi/libc.js';
import { STRUCTS, type KvmCpuidEntry2 } from '../kvm/abi/structs.js';
import type { Kvm } from '../kvm/system.js';
import type { Vm } from '../kvm/vm.js';
import { dirOf, LayoutContext, markRoundtrip, type BufSpec, type LayoutObservation } from './layout-context.js';
import { LAYOUT_MSRS } from './layout-vcpu.js';
import { PLACEMENTS } from './placement.js';
import { LAYOUT_SLOT_COUNT, LAYOUT_SLOT_GPA } from './programs.js';
import type { GroundTruthRecorder } from './recorder.js';

const S = STRUCTS;
const CPUID_MAX = 256;
const MSR_LIST_MAX = 1024;

export interface LayoutVmResult {
  observations: LayoutObservation[];
  /** The slot observations: their round trip is proven by the guests' reads, after the vCPUs ran. */
  slotObservations: LayoutObservation[];
  /** LAYOUT_MSRS that KVM_GET_MSR_INDEX_LIST lists, for the vCPU half. */
  msrs: number[];
}

/** `slotMem`: LAYOUT_SLOT_COUNT pages, page i holding slotMarker(i + 1) at byte 0. */
export function layoutVm(kvm: Kvm, vm: Vm, slotMem: bigint, rec: GroundTruthRecorder | null): LayoutVmResult {
  const ctx = new LayoutContext(8 + CPUID_MAX * S.kvm_cpuid_entry2.size, rec, null);
  try {
    const region = S.kvm_userspace_memory_region;
    const slotObservations = PLACEMENTS.slice(0, LAYOUT_SLOT_COUNT).map((p, i) => {
      const at = ctx.at(p, region.size, region.align);
      const r = {
        slot: i + 1,
        flags: 0,
        guest_phys_addr: BigInt(LAYOUT_SLOT_GPA + i * 0x1000),
        memory_size: BigInt(PAGE_SIZE),
        userspace_addr: slotMem + BigInt(i * PAGE_SIZE),
      };
      const name = 'KVM_SET_USER_MEMORY_REGION';
      return ctx.call(name, p, at, () => [{ what: 'arg', dir: dirOf(name), offset: 0, len: region.size, align: region.align }], () => vm.setUserMemoryRegion(r, at)).obs;
    });

    const cpuHead = S.kvm_cpuid2;
    const cpuEnt = S.kvm_cpuid_entry2;
    repeatRead(ctx, 'KVM_GET_SUPPORTED_CPUID', CPUID_MAX * cpuEnt.size, cpuEnt.align, cpuHead.size, (n) => [
      { what: 'arg', dir: 'both', offset: 0, len: cpuHead.size, align: cpuHead.align },
      { what: 'kvm_cpuid2.entries', dir: 'to_user', offset: cpuHead.size, len: n * cpuEnt.size, align: cpuEnt.align },
    ], (at) => withoutApicIds(kvm.getSupportedCpuid(CPUID_MAX, at)));

    const listHead = S.kvm_msr_list;
    const list = repeatRead(ctx, 'KVM_GET_MSR_INDEX_LIST', MSR_LIST_MAX * 4, 4, listHead.size, (n) => [
      { what: 'arg', dir: 'both', offset: 0, len: listHead.size, align: listHead.align },
      { what: 'kvm_msr_list.indices', dir: 'to_user', offset: listHead.size, len: n * 4, align: 4 },
    ], (at) => kvm.getMsrIndexList(MSR_LIST_MAX, at));

    // No argument buffer: the record carries an empty list, so a tracer must flag nothing for it.
    ctx.call('KVM_CHECK_EXTENSION', PLACEMENTS[0], 0n, () => [], () => vm.checkExtension('KVM_CAP_NR_MEMSLOTS'));
    ctx.observations.pop(); // not a placed buffer: keep it out of the placement counts
    const msrs = LAYOUT_MSRS.filter((m) => list?.includes(m));
    return { observations: ctx.observations, slotObservations, msrs };
  } finally {
    ctx.close();
  }
}

/**
 * KVM_GET_SUPPORTED_CPUID fills some leaves from the host CPU the calling thread happens to run on: measured
 * here with the thread pinned by taskset to CPU 0 and then CPU 1, leaf 1 EBX[31:24] (initial APIC ID) and
 * leaf 0xB EDX (x2APIC ID) differ (0x20800 vs 0x1020800, 0 vs 1). Those identity fields are masked before
 * reads at different placements are compared, so a migration between two calls is not mistaken for a
 * placement effect. (Leaf 0x1F, where present, carries the x2APIC ID in EDX too.)
 */
function withoutApicIds(entries: KvmCpuidEntry2[]): KvmCpuidEntry2[] {
  return entries.map((e) => {
    if (e.function === 1) return { ...e, ebx: e.ebx & 0x00ffffff };
    if (e.function === 0xb || e.function === 0x1f) return { ...e, edx: 0 };
    return e;
  });
}

/** Read at every placement; each read must equal the first. Returns the first read. */
function repeatRead<T extends unknown[]>(
  ctx: LayoutContext,
  name: string,
  primaryLen: number,
  align: number,
  headLen: number,
  bufs: (n: number) => BufSpec[],
  read: (at: bigint) => T,
): T | undefined {
  let first: T | undefined;
  let firstObs: LayoutObservation | undefined;
  for (const p of PLACEMENTS) {
    const at = ctx.at(p, primaryLen, align, headLen);
    const { value, obs } = ctx.call(name, p, at, (r) => bufs(r?.length ?? 0), () => read(at));
    if (!firstObs) {
      first = value;
      firstObs = obs;
    } else {
      markRoundtrip(first, value, firstObs, obs);
    }
  }
  return first;
}
