/**
 * The summary of an aggregate-only capture (`attach --aggregate`): the same SummaryRecord as a full
 * capture, its per-ioctl and per-vCPU parts taken from the kernel's counters instead of from records.
 *
 * What differs, and is said in the record: `aggregate: true`; p50/p99 are estimates from the kernel's
 * log-linear histogram (`latency_estimate`), max is exact and `mean_ns` is added; exit reasons are keyed
 * "pid/vcpu" only when exactly one process was traced (the kernel keys them by vcpu id alone), otherwise
 * with "*" in place of the pid; vcpu ids and exit reasons past the kernel's caps are folded into the last
 * slot ("63+"); `kvm_run` is empty, since a vCPU's kernel address and id come from its KVM_RUN records.
 */
import type { AggCounters, KernelAggregate } from '../bpf/aggregate.js';
import { AGG_REASON_CAP, AGG_VCPU_CAP, aggQuantile } from '../bpf/aggregate.js';
import type { LatencyStats, SummaryRecord } from '../decode/records.js';
import { cmdHex } from '../kvm/abi/ioc.js';
import { exitReasonName, ioctlByCmd } from '../kvm/abi/ioctl-table.js';

export const LATENCY_ESTIMATE = 'p50/p99: midpoint of a log-linear histogram bucket (4 per power of two, within ~12 %); max exact';

/** Name of a request number as the decoder names it (canonical name, or KVM_UNKNOWN_0x…). */
export function aggIoctlName(cmd: number): string {
  return ioctlByCmd(cmd)?.name ?? `KVM_UNKNOWN_${cmdHex(cmd)}`;
}

function merge(a: AggCounters, b: AggCounters): AggCounters {
  return {
    count: a.count + b.count,
    errors: a.errors + b.errors,
    noEnter: a.noEnter + b.noEnter,
    sumNs: a.sumNs + b.sumNs,
    maxNs: Math.max(a.maxNs, b.maxNs),
    hist: a.hist.map((n, i) => n + b.hist[i]),
  };
}

function latency(c: AggCounters): LatencyStats & { mean_ns: number } {
  const timed = c.count - c.noEnter;
  return {
    count: c.count,
    errors: c.errors,
    p50_ns: aggQuantile(c, 0.5),
    p99_ns: aggQuantile(c, 0.99),
    max_ns: c.maxNs,
    mean_ns: timed > 0 ? Math.round(c.sumNs / timed) : 0,
  };
}

/**
 * `base` is what the capture built from the ring (fd lifecycle, kvm_run mappings, lost, duration); `pids`
 * the -p filter. Returns the summary with ioctls, exits, unknown_ioctls and events from `agg`.
 */
export function aggregateSummary(base: SummaryRecord, agg: KernelAggregate, pids: readonly number[] = []): SummaryRecord {
  const byName = new Map<string, AggCounters>();
  for (const [cmd, c] of agg.ioctls) {
    const name = aggIoctlName(cmd);
    const had = byName.get(name);
    byName.set(name, had ? merge(had, c) : c);
  }
  let unknown = 0;
  for (const [name, c] of byName) if (name.startsWith('KVM_UNKNOWN_')) unknown += c.count;
  const names = [...byName.keys()].sort((a, b) => byName.get(b)!.count - byName.get(a)!.count || a.localeCompare(b));
  const ioctls: Record<string, LatencyStats> = {};
  for (const n of names) ioctls[n] = latency(byName.get(n)!);
  if (agg.overflow) ioctls.other = latency(agg.overflow);

  const who = pids.length === 1 ? String(pids[0]) : '*';
  const exits: Record<string, Record<string, number>> = {};
  for (const [slot, reasons] of [...agg.exits].sort((a, b) => a[0] - b[0])) {
    const vcpu = slot === AGG_VCPU_CAP ? `${slot}+` : String(slot);
    const named = [...reasons].map(([r, n]) => [r === AGG_REASON_CAP ? `${exitReasonName(r)}+` : exitReasonName(r), n] as const);
    exits[`${who}/${vcpu}`] = Object.fromEntries(named.sort((a, b) => b[1] - a[1]));
  }
  let calls = 0;
  for (const c of agg.ioctls.values()) calls += c.count;
  calls += agg.overflow?.count ?? 0;
  return {
    ...base,
    // Ioctls counted in the kernel plus the records that still came through the ring (fd lifecycle).
    events: calls + base.events,
    unknown_ioctls: unknown,
    ioctls,
    exits,
    kvm_run: [],
    aggregate: true,
    latency_estimate: LATENCY_ESTIMATE,
  };
}
