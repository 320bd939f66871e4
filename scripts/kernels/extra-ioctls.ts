/**
 * Copy rules the reference guest cannot check: a handful of KVM ioctls it does not issue, made under a
 * capture of this process so their copies can be compared with the rules as well (rule-check.ts). They are
 * the ones whose handlers copy through memdup_user / vmemdup_user — observable on Debian's kernels — plus a
 * few through copy_from_user / copy_to_user (compared wherever those become traceable): KVM_SET_XCRS (also
 * at an odd address), KVM_SET_LAPIC, KVM_SET_XSAVE, KVM_SET_SREGS2, KVM_SET_CPUID, KVM_SET_GSI_ROUTING,
 * KVM_SET_SIGNAL_MASK, KVM_SET_PMU_EVENT_FILTER and their GETs. Every size and offset comes from the
 * kernel's BTF; a call the kernel refuses is recorded and simply not compared (failed calls copy nothing
 * the rules claim).
 */
import { findMember } from '../../src/btf/layout.js';
import type { TypeSource } from '../../src/btf/type-source.js';
import { capture } from '../../src/capture/session.js';
import { stopSignal } from '../../src/capture/stop-signal.js';
import type { TraceRecord } from '../../src/decode/records.js';
import { ioctlPtr } from '../../src/ffi/libc.js';
import { ioctlByName } from '../../src/kvm/abi/ioctl-table.js';
import { Kvm } from '../../src/kvm/system.js';

export interface ExtraRun {
  records: TraceRecord[];
  /** "NAME ok" or "NAME: ERRNO" per call, in order. */
  calls: string[];
}

const size = (t: TypeSource, name: string): number => {
  const s = t.struct(name);
  if (!s) throw new Error(`struct ${name} is not in the kernel BTF`);
  return s.size;
};
const offset = (t: TypeSource, struct: string, member: string): number => {
  const s = t.struct(struct);
  const m = s && findMember(s, member);
  if (!m) throw new Error(`${struct}.${member} is not in the kernel BTF`);
  return m.offset;
};

/** Issue the extra ioctls on a fresh VM and vCPU of this process while it is traced; the capture's records. */
export async function runExtraIoctls(types: TypeSource): Promise<ExtraRun> {
  const records: TraceRecord[] = [];
  const calls: string[] = [];
  const call = (fd: number, name: string, buf: Buffer): void => {
    try {
      ioctlPtr(fd, Number(ioctlByName(name).cmd), buf, name);
      calls.push(`${name} ok`);
    } catch (err) {
      calls.push((err as Error).message);
    }
  };
  // An odd address inside a larger buffer: the kernel copies at any alignment.
  const odd = (b: Buffer): Buffer => {
    const o = Buffer.alloc(b.length + 1);
    b.copy(o, 1);
    return o.subarray(1);
  };
  const stop = stopSignal({ signals: false });
  try {
    await capture({
      pids: [process.pid],
      signal: stop.signal,
      sinks: [{ write: (r) => void records.push(r), close: async () => {} }],
      onAttached: () => {
        const kvm = Kvm.open();
        const handles: Array<{ close(): void }> = [];
        try {
          const vm = kvm.createVm();
          handles.push(vm);
          vm.createIrqchip();
          const vcpu = vm.createVcpu(0);
          handles.push(vcpu);
          for (const [get, set, struct] of [
            ['KVM_GET_XCRS', 'KVM_SET_XCRS', 'kvm_xcrs'],
            ['KVM_GET_LAPIC', 'KVM_SET_LAPIC', 'kvm_lapic_state'],
            ['KVM_GET_XSAVE', 'KVM_SET_XSAVE', 'kvm_xsave'],
            ['KVM_GET_SREGS2', 'KVM_SET_SREGS2', 'kvm_sregs2'],
          ] as const) {
            const b = Buffer.alloc(size(types, struct));
            call(vcpu.fd, get, b);
            call(vcpu.fd, set, b);
            if (struct === 'kvm_xcrs') call(vcpu.fd, set, odd(b));
          }
          // KVM_SET_CPUID: one (empty) leaf.
          const cpuid = Buffer.alloc(offset(types, 'kvm_cpuid', 'entries') + size(types, 'kvm_cpuid_entry'));
          cpuid.writeUInt32LE(1, offset(types, 'kvm_cpuid', 'nent'));
          call(vcpu.fd, 'KVM_SET_CPUID', cpuid);
          // KVM_SET_GSI_ROUTING: GSIs 0 and 1 to pins 0 and 1 of the master PIC.
          const entry = size(types, 'kvm_irq_routing_entry');
          const head = offset(types, 'kvm_irq_routing', 'entries');
          const routing = Buffer.alloc(head + 2 * entry);
          routing.writeUInt32LE(2, offset(types, 'kvm_irq_routing', 'nr'));
          const u = offset(types, 'kvm_irq_routing_entry', 'u');
          for (let i = 0; i < 2; i++) {
            const at = head + i * entry;
            routing.writeUInt32LE(i, at + offset(types, 'kvm_irq_routing_entry', 'gsi'));
            routing.writeUInt32LE(1 /* KVM_IRQ_ROUTING_IRQCHIP */, at + offset(types, 'kvm_irq_routing_entry', 'type'));
            routing.writeUInt32LE(i, at + u + offset(types, 'kvm_irq_routing_irqchip', 'pin'));
          }
          call(vm.fd, 'KVM_SET_GSI_ROUTING', routing);
          // KVM_SET_SIGNAL_MASK: an empty mask of sizeof(sigset_t) bytes right after the 4-byte header.
          const sigset = types.type('sigset_t')?.size ?? 8;
          const mask = Buffer.alloc(offset(types, 'kvm_signal_mask', 'sigset') + sigset);
          mask.writeUInt32LE(sigset, offset(types, 'kvm_signal_mask', 'len'));
          call(vcpu.fd, 'KVM_SET_SIGNAL_MASK', mask);
          // KVM_SET_PMU_EVENT_FILTER: deny two events.
          const filter = Buffer.alloc(offset(types, 'kvm_pmu_event_filter', 'events') + 2 * 8);
          filter.writeUInt32LE(1 /* KVM_PMU_EVENT_DENY */, offset(types, 'kvm_pmu_event_filter', 'action'));
          filter.writeUInt32LE(2, offset(types, 'kvm_pmu_event_filter', 'nevents'));
          call(vm.fd, 'KVM_SET_PMU_EVENT_FILTER', filter);
        } finally {
          for (const h of handles.reverse()) h.close();
          kvm.close();
          stop.stop('extra ioctls done');
        }
      },
    });
  } finally {
    stop.dispose();
  }
  return { records, calls };
}
