/**
 * What the summary takes from the kernel's own maps at the end of a capture, after the programs were detached:
 * in aggregate mode the counters themselves (aggregate-summary.ts), with any overflow said; with the
 * hardware-exit hooks the statement whether kvm:kvm_exit fired here (said once, in the summary)
 * and, where it did, the hardware-exit table and the per-vCPU time split.
 */
import type { KernelAggregate } from '../bpf/aggregate.js';
import { hwExitVerdict, type HwAttach } from '../bpf/hw-exits.js';
import { kernelHwReasonNames } from '../bpf/hw-reasons.js';
import type { TracerStats } from '../bpf/stats.js';
import type { SummaryRecord } from '../decode/records.js';
import { hwExitRows, hwTotals, runSplitOf, vcpuViews } from '../analysis/kernel-aggregate.js';
import { aggregateSummary } from './aggregate-summary.js';

export interface KernelSummaryInput {
  agg: KernelAggregate;
  stats: TracerStats;
  hw: HwAttach;
  aggregate: boolean;
  /** Full capture: KVM_RUN records counted with the hooks and the hardware exits they carried (the decoder's). */
  records: { hwRuns: number; hwExits: number };
  granule: number;
  comm: (pid: number) => string;
  log: (line: string) => void;
}

/** `base` with the kernel's parts added. */
export function kernelSummary(base: SummaryRecord, x: KernelSummaryInput): SummaryRecord {
  let s = base;
  const views = x.aggregate ? vcpuViews(x.agg, x.granule) : [];
  if (x.aggregate) {
    s = aggregateSummary(s, { agg: x.agg, views, granule: x.granule, comm: x.comm, untimed: x.stats.handlingUntimed });
    const o = x.stats;
    const overflow = { ioctls: o.ioctlOverflow, vcpus: o.vcpuOverflow, handling_folded: o.handlingFolded, handling: o.handlingOverflow, hw: o.hwOverflow };
    if (Object.values(overflow).some((n) => n > 0)) {
      s = { ...s, overflow };
      x.log(`kernel maps full: counted in overflow entries ${JSON.stringify(overflow)}`);
    }
  }
  const totals = x.aggregate ? hwTotals(x.agg) : { runs: x.records.hwRuns, exits: x.records.hwExits };
  const verdict = hwExitVerdict(x.hw, totals.runs, totals.exits);
  if (!x.hw.requested) return s;
  // Said once: in the summary (its text, or the JSON's hw_exits), not also in the log.
  const status = verdict ?? { available: false, statement: 'no KVM_RUN was traced: nothing tells whether kvm:kvm_exit fires here' };
  if (!status.available) {
    const { run_split: _drop, ...rest } = s;
    return { ...rest, hw_exits: status };
  }
  const names = kernelHwReasonNames();
  return {
    ...s,
    hw_exits: { ...status, names: names.source },
    hw_exit_stats: hwExitRows(x.agg, names),
    ...(x.aggregate ? { run_split: runSplitOf(views) } : {}),
  };
}
