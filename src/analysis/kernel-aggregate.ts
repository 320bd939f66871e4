/**
 * The kernel aggregate (src/bpf/aggregate.ts: what the agg_* maps held, summed over CPUs) seen the way the
 * record-based analysis sees a full capture: one view per process / VM / vCPU with its KVM_RUN latency, exit
 * reasons by name, hardware-exit totals and its VMM handling time per exit key — the keys spelled exactly as
 * exit-key.ts spells them for records, so the two modes can be compared key by key — plus the summary shapes
 * built from it: exits per "pid/vcpu", vmm_handling, the hardware-exit table and the per-vCPU time split.
 */
import {
  AGG_REASON_CAP,
  emptyHist,
  mergeHist,
  vmIndexes,
  type AggCounters,
  type AggExitKey,
  type AggHist,
  type AggHwTotals,
  type AggVcpuKey,
  type KernelAggregate,
} from '../bpf/aggregate.js';
import { kernelQuantile } from '../decode/histogram.js';
import { KT_XK_ERROR, KT_XK_FOLDED, KT_XK_IO, KT_XK_MMIO } from '../bpf/event-layout.js';
import { hwReasonName, isaName, type HwReasonNames } from '../bpf/hw-reasons.js';
import { errnoName } from '../ffi/errors.js';
import { exitReasonName } from '../kvm/abi/ioctl-table.js';
import type { DurationStats, HwExitStats, RunSplit, VcpuHandlingStats, VmmHandlingSummary } from '../decode/records.js';
import { foldedExitKey, ioExitKey, mmioExitKey, type ExitKey } from './exit-key.js';

export interface VcpuAggView {
  pid: number;
  /** VM index in the process (creation order, vmIndexes), null when the vCPU was not resolved. */
  vm: number | null;
  /** vCPU id, null when the fd was not a vCPU the kernel side could resolve. */
  vcpu: number | null;
  /** The VM's kernel address. */
  kvm: string;
  run: AggCounters;
  /** Exit reason name ("IO"; the capped last slot "<NAME>+") → KVM_RUN returns. */
  exits: Record<string, number>;
  hw: AggHwTotals;
  handling: Array<{ key: ExitKey; hist: AggHist }>;
  handlingTotal: AggHist;
}

/** The exit reason name of a kernel exit-reason slot ("IO"; the capped last slot also counts larger ones: "+"). */
export const aggReasonName = (r: number): string => (r === AGG_REASON_CAP ? `${exitReasonName(r)}+` : exitReasonName(r));

/** The handling key string of a kernel exit key (exit-key.ts's spelling). */
export function exitKeyFromKernel(x: AggExitKey, granule: number): ExitKey {
  if (x.kind === KT_XK_ERROR) {
    const why = `error ${errnoName(x.reason)}`;
    return { key: why, reason: why };
  }
  const reason = exitReasonName(x.reason);
  if (x.kind === KT_XK_FOLDED) return foldedExitKey(reason);
  if (x.kind === KT_XK_IO) return ioExitKey(x.dir === 1 ? 'out' : 'in', x.port);
  if (x.kind === KT_XK_MMIO) return mmioExitKey(x.dir ? 'write' : 'read', x.addr, granule);
  return { key: reason, reason };
}

const vcpuId = (k: AggVcpuKey): string => `${k.tgid}/${k.kvm}/${k.vcpuId}`;

/** One view per vCPU the kernel counted, ordered by pid, VM, vCPU. */
export function vcpuViews(agg: KernelAggregate, granule: number): VcpuAggView[] {
  const vms = vmIndexes(agg);
  const views = new Map<string, VcpuAggView>();
  for (const v of agg.vcpus) {
    const exits: Record<string, number> = {};
    for (const [r, n] of [...v.reasons].sort((a, b) => b[1] - a[1])) exits[aggReasonName(r)] = (exits[aggReasonName(r)] ?? 0) + n;
    views.set(vcpuId(v.key), {
      pid: v.key.tgid,
      vm: vms.get(`${v.key.tgid}/${v.key.kvm}`) ?? null,
      vcpu: v.key.vcpuId < 0 ? null : v.key.vcpuId,
      kvm: v.key.kvm,
      run: v.run,
      exits,
      hw: v.hw,
      handling: [],
      handlingTotal: emptyHist(),
    });
  }
  for (const h of agg.handling) {
    const view = views.get(vcpuId(h.vcpu));
    if (!view) continue; // the vCPU's counters did not fit (its KVM_RUNs are in the overflow entry)
    const key = exitKeyFromKernel(h.exit, granule);
    const had = view.handling.find((x) => x.key.key === key.key);
    if (had) had.hist = mergeHist(had.hist, h.hist);
    else view.handling.push({ key, hist: h.hist });
    view.handlingTotal = mergeHist(view.handlingTotal, h.hist);
  }
  for (const v of views.values()) v.handling.sort((a, b) => b.hist.count - a.hist.count || a.key.key.localeCompare(b.key.key));
  return [...views.values()].sort((a, b) => a.pid - b.pid || (a.vm ?? -1) - (b.vm ?? -1) || (a.vcpu ?? -1) - (b.vcpu ?? -1));
}

/** DurationStats of a kernel histogram: count, min, max, sum exact; percentiles within its bucket (~12 %). */
export function histStats(h: AggHist): DurationStats {
  if (h.count === 0) return { count: 0, min_ns: 0, p50_ns: 0, p90_ns: 0, p99_ns: 0, max_ns: 0, sum_ns: 0 };
  const q = (p: number): number => kernelQuantile(h, p);
  return { count: h.count, min_ns: h.minNs, p50_ns: q(0.5), p90_ns: q(0.9), p99_ns: q(0.99), max_ns: h.maxNs, sum_ns: h.sumNs };
}

/** Exit reasons per "pid/vcpu", as the full capture's summary keys them (two VMs' vCPU 0 share a key there too). */
export function exitsByVcpu(views: VcpuAggView[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const v of views) {
    if (!Object.keys(v.exits).length) continue;
    const k = `${v.pid}/${v.vcpu ?? '?'}`;
    const m = (out[k] ??= {});
    for (const [r, n] of Object.entries(v.exits)) m[r] = (m[r] ?? 0) + n;
  }
  return out;
}

/**
 * The summary's vmm_handling from the kernel: per vCPU every re-entry the kernel timed, by exit key.
 * pending = returns not (yet) followed by a timed re-entry: KVM_RUN calls − re-entries.
 */
export function handlingSummary(views: VcpuAggView[], comm: (pid: number) => string, untimed: number, granule: number): VmmHandlingSummary {
  const vcpus: VcpuHandlingStats[] = views
    .filter((v) => v.vcpu !== null)
    .map((v) => ({
      pid: v.pid,
      comm: comm(v.pid),
      vm: v.vm,
      vcpu: v.vcpu,
      fd: null,
      total: histStats(v.handlingTotal),
      by_exit: v.handling.map(({ key, hist }) => ({ ...key, ...histStats(hist) })),
      pending: Math.max(0, v.run.count - v.handlingTotal.count),
    }));
  return { mmio_granule: granule, vcpus, untimed, overlapped: 0 };
}

/** The hardware-exit table: per (isa, reason) over every vCPU, most frequent first. */
export function hwExitRows(agg: Pick<KernelAggregate, 'hw'>, names: HwReasonNames): HwExitStats[] {
  const by = new Map<string, { isa: number; reason: number; hist: AggHist }>();
  for (const h of agg.hw) {
    const k = `${h.isa}/${h.reason}`;
    const had = by.get(k);
    if (had) had.hist = mergeHist(had.hist, h.hist);
    else by.set(k, { isa: h.isa, reason: h.reason, hist: h.hist });
  }
  let samples = 0;
  let time = 0;
  for (const x of by.values()) {
    samples += x.hist.count;
    time += x.hist.sumNs;
  }
  const pct = (n: number, of: number): number => (of > 0 ? Math.round((n / of) * 10000) / 100 : 0);
  return [...by.values()]
    .map((x) => ({
      isa: isaName(x.isa),
      reason: hwReasonName(names, x.isa, x.reason),
      code: x.reason,
      samples: x.hist.count,
      pct: pct(x.hist.count, samples),
      time_pct: pct(x.hist.sumNs, time),
      ...histStats(x.hist),
    }))
    .sort((a, b) => b.samples - a.samples || a.reason.localeCompare(b.reason));
}

/** Per vCPU with hardware-exit totals: guest / KVM / VMM time. */
export function runSplitOf(views: VcpuAggView[]): RunSplit[] {
  return views
    .filter((v) => v.hw.runs > 0)
    .map((v) => ({
      pid: v.pid,
      vm: v.vm,
      vcpu: v.vcpu,
      runs: v.hw.runs,
      hw_exits: v.hw.exits,
      max_hw_exits: v.hw.maxExits,
      guest_ns: v.hw.guestNs,
      kvm_ns: Math.max(0, v.hw.runNs - v.hw.guestNs),
      vmm_ns: v.handlingTotal.sumNs,
    }));
}

/** Total KVM_RUNs counted with the hardware-exit hooks, and the hardware exits they absorbed. */
export function hwTotals(agg: Pick<KernelAggregate, 'vcpus' | 'vcpuOverflow'>): { runs: number; exits: number } {
  let runs = 0;
  let exits = 0;
  for (const v of [...agg.vcpus, ...(agg.vcpuOverflow ? [agg.vcpuOverflow] : [])]) {
    runs += v.hw.runs;
    exits += v.hw.exits;
  }
  return { runs, exits };
}
