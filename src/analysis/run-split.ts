/**
 * Where each vCPU's time went, from full-capture records of a kernel that emits kvm:kvm_exit (KVM_RUN records
 * with hw_exits / guest_ns / kvm_ns): per vCPU the KVM_RUN calls, the in-kernel exits they absorbed (and the
 * most one absorbed), their time in the guest and in KVM; the VMM's share (time between a return and the
 * next KVM_RUN) comes from the handling time of the same vCPU. The kernel aggregate builds the same rows from
 * its counters (kernel-aggregate.ts runSplitOf).
 */
import type { IoctlRecord, RunSplit, VmmHandlingSummary } from '../decode/records.js';

type Acc = Omit<RunSplit, 'vmm_ns'>;

export class RunSplitTracker {
  private readonly by = new Map<string, Acc>();

  /** Feed a KVM_RUN record; only those carrying hardware-exit fields count. */
  add(r: IoctlRecord): void {
    if (r.hw_exits === undefined || r.guest_ns === undefined) return;
    const k = `${r.pid}/${r.vm}/${r.vcpu}`;
    let a = this.by.get(k);
    if (!a) this.by.set(k, (a = { pid: r.pid, vm: r.vm, vcpu: r.vcpu, runs: 0, hw_exits: 0, max_hw_exits: 0, guest_ns: 0, kvm_ns: 0 }));
    a.runs++;
    a.hw_exits += r.hw_exits;
    a.max_hw_exits = Math.max(a.max_hw_exits, r.hw_exits);
    a.guest_ns += r.guest_ns;
    a.kvm_ns += r.kvm_ns ?? 0;
  }

  /** Rows (empty when no record carried the fields), the VMM share from `handling`. */
  rows(handling: VmmHandlingSummary | undefined): RunSplit[] {
    const vmm = new Map<string, number>();
    for (const v of handling?.vcpus ?? []) {
      const k = `${v.pid}/${v.vm}/${v.vcpu}`;
      vmm.set(k, (vmm.get(k) ?? 0) + v.total.sum_ns);
    }
    return [...this.by.entries()]
      .sort(([, a], [, b]) => a.pid - b.pid || (a.vm ?? -1) - (b.vm ?? -1) || (a.vcpu ?? -1) - (b.vcpu ?? -1))
      .map(([k, a]) => ({ ...a, vmm_ns: vmm.get(k) ?? 0 }));
  }
}
