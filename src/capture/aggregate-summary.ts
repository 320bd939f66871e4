/**
 * The summary of an aggregate-only capture (`attach --aggregate`): the same SummaryRecord as a full
 * capture, its per-ioctl, per-vCPU and VMM-handling parts taken from the kernel's counters instead of from
 * records (src/analysis/kernel-aggregate.ts turns them into the record-based shapes).
 *
 * What differs, and is said in the record: `aggregate: true`; p50/p99 are estimates from the kernel's
 * log-linear histogram (`latency_estimate`), max is exact and `mean_ns` is added; exit reasons are keyed
 * "pid/vcpu" as in a full capture; exit reasons past the kernel's cap are folded into the last slot ("+");
 * vmm_handling's vCPUs have no fd (the kernel keys a vCPU by process, VM and id) and percentiles from the same
 * histogram rule; `kvm_run` is empty, since a vCPU's kernel address comes from its KVM_RUN records.
 */
import type { AggCounters, KernelAggregate } from '../bpf/aggregate.js';
import { mergeCounters } from '../bpf/aggregate.js';
import { kernelQuantile } from '../decode/histogram.js';
import type { LatencyStats, SummaryRecord } from '../decode/records.js';
import { cmdHex } from '../kvm/abi/ioc.js';
import { ioctlByCmd, ioctlByName } from '../kvm/abi/ioctl-table.js';
import { exitsByVcpu, handlingSummary, type VcpuAggView } from '../analysis/kernel-aggregate.js';

export const LATENCY_ESTIMATE = 'p50/p99: midpoint of a log-linear histogram bucket (4 per power of two, within ~12 %); max exact';

/** Name of a request number as the decoder names it (canonical name, or KVM_UNKNOWN_0x…). */
export function aggIoctlName(cmd: number): string {
  return ioctlByCmd(cmd)?.name ?? `KVM_UNKNOWN_${cmdHex(cmd)}`;
}

const KVM_RUN = ioctlByName('KVM_RUN').cmd;

function latency(c: AggCounters): LatencyStats & { mean_ns: number } {
  const timed = c.count - c.noEnter;
  return {
    count: c.count,
    errors: c.errors,
    p50_ns: kernelQuantile(c, 0.5),
    p99_ns: kernelQuantile(c, 0.99),
    max_ns: c.maxNs,
    mean_ns: timed > 0 ? Math.round(c.sumNs / timed) : 0,
  };
}

/** Request number → counters over every process, KVM_RUN's summed over the vCPUs (and their overflow). */
export function countersByCmd(agg: KernelAggregate): Map<number, AggCounters> {
  const out = new Map<number, AggCounters>();
  const add = (cmd: number, c: AggCounters): void => {
    const had = out.get(cmd);
    out.set(cmd, had ? mergeCounters(had, c) : c);
  };
  for (const per of agg.ioctls.values()) for (const [cmd, c] of per) add(cmd, c);
  for (const v of [...agg.vcpus, ...(agg.vcpuOverflow ? [agg.vcpuOverflow] : [])]) add(KVM_RUN, v.run);
  return out;
}

export interface AggregateSummaryInput {
  agg: KernelAggregate;
  /** vcpuViews(agg, granule) */
  views: VcpuAggView[];
  granule: number;
  /** Process name by pid (from the ring's records or /proc); '' when unknown. */
  comm: (pid: number) => string;
  /** KT_STAT_HANDLING_UNTIMED */
  untimed: number;
}

/**
 * `base` is what the capture built from the ring (fd lifecycle, kvm_run mappings, lost, duration). Returns
 * the summary with ioctls, exits, vmm_handling, unknown_ioctls and events from the kernel's counters.
 */
export function aggregateSummary(base: SummaryRecord, x: AggregateSummaryInput): SummaryRecord {
  const byName = new Map<string, AggCounters>();
  for (const [cmd, c] of countersByCmd(x.agg)) {
    const name = aggIoctlName(cmd);
    const had = byName.get(name);
    byName.set(name, had ? mergeCounters(had, c) : c);
  }
  let unknown = 0;
  for (const [name, c] of byName) if (name.startsWith('KVM_UNKNOWN_')) unknown += c.count;
  const names = [...byName.keys()].sort((a, b) => byName.get(b)!.count - byName.get(a)!.count || a.localeCompare(b));
  const ioctls: Record<string, LatencyStats> = {};
  for (const n of names) ioctls[n] = latency(byName.get(n)!);
  if (x.agg.ioctlOverflow) ioctls.other = latency(x.agg.ioctlOverflow);

  let calls = 0;
  for (const c of byName.values()) calls += c.count;
  calls += x.agg.ioctlOverflow?.count ?? 0;
  const handling = handlingSummary(x.views, x.comm, x.untimed, x.granule);
  return {
    ...base,
    // Ioctls counted in the kernel plus the records that still came through the ring (fd lifecycle).
    events: calls + base.events,
    unknown_ioctls: unknown,
    ioctls,
    exits: exitsByVcpu(x.views),
    kvm_run: [],
    ...(handling.vcpus.length ? { vmm_handling: handling } : {}),
    aggregate: true,
    latency_estimate: LATENCY_ESTIMATE,
  };
}
