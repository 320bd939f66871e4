/**
 * `top`'s model, pure: successive cumulative snapshots in, a view out — one row per process (or process
 * total) and per vCPU, each with totals since the last reset, rates over the last interval, and KVM_RUN /
 * VMM-handling percentiles of the last interval (from the histogram buckets that moved in it). Nothing
 * here reads a clock or the kernel; the snapshot carries its own time.
 *
 * Reset takes the last snapshot as the new baseline for totals (the kernel counters keep running: the BPF
 * side only reads). A field the source did not provide stays undefined in the row — never 0.
 */
import { kernelQuantile } from '../decode/histogram.js';
import type { BucketCounts, TopEntity, TopProcess, TopSnapshot } from './snapshot.js';

export interface Counter {
  /** Since the last reset. */
  total: number;
  /** Per second over the last interval; absent for the first view (no interval yet). */
  rate?: number;
  /** Count in the last interval; absent for the first view. */
  delta?: number;
}

export interface TopRow {
  /** "pid/vm/vcpu" with "*" for unknown parts; unique per view. */
  key: string;
  level: 'process' | 'vcpu';
  pid: number | null;
  comm: string;
  vm: number | null;
  vcpu: number | null;
  /** How the vCPU is shown ("3", "63+", "-" for a process row). */
  vcpuLabel: string;
  exits?: Counter;
  byReason?: Record<string, Counter>;
  ioctls?: Counter;
  errors?: Counter;
  /** In-kernel (hardware) exits, where counted. */
  hwExits?: Counter;
  runP50?: number;
  runP99?: number;
  handlingP99?: number;
}

export interface TopView {
  t_ns: number;
  /** Seconds covered by the rates (since the previous snapshot). */
  interval_s: number;
  /** Seconds covered by the totals (since the baseline: the source opened, or the last reset). */
  since_s: number;
  rows: TopRow[];
  /** Every exit reason with a non-zero total, most frequent first. */
  reasons: string[];
  processes: TopProcess[];
  lost: number;
  notes: string[];
}

const keyOf = (e: Pick<TopEntity, 'pid' | 'vm' | 'vcpu'>): string => `${e.pid ?? '*'}/${e.vm ?? '*'}/${e.vcpu ?? '-'}`;

function counter(cur: number | undefined, prev: number | undefined, base: number | undefined, dt: number): Counter | undefined {
  if (cur === undefined) return undefined;
  const c: Counter = { total: cur - (base ?? 0) };
  if (dt > 0) {
    c.delta = cur - (prev ?? 0);
    c.rate = c.delta / dt;
  }
  return c;
}

/** A percentile of the buckets that moved between two cumulative histograms; undefined when none did. */
export function intervalQuantile(cur: BucketCounts | undefined, prev: BucketCounts | undefined, q: number): number | undefined {
  if (!cur) return undefined;
  const hist = cur.counts.map((n, i) => n - (prev?.counts[i] ?? 0));
  if (!hist.some((n) => n > 0)) return undefined;
  return kernelQuantile({ maxNs: cur.max_ns, hist }, q);
}

export class TopModel {
  private prev: TopSnapshot | undefined;
  private base: TopSnapshot | undefined;
  private first: number | undefined;
  private readonly prevBy = new Map<string, TopEntity>();
  private readonly baseBy = new Map<string, TopEntity>();

  /** Take the next snapshot; returns the view with rates over the interval since the previous one. */
  update(s: TopSnapshot): TopView {
    this.first ??= s.t_ns;
    const dt = this.prev ? (s.t_ns - this.prev.t_ns) / 1e9 : 0;
    const since = (s.t_ns - (this.base?.t_ns ?? this.first)) / 1e9;
    const comms = new Map(s.processes.map((p) => [p.pid, p.comm]));
    const reasonTotals = new Map<string, number>();
    const rows = s.entities.map((e): TopRow => {
      const k = keyOf(e);
      const p = this.prevBy.get(k);
      const b = this.baseBy.get(k);
      const row: TopRow = {
        key: k,
        level: e.vcpu === null ? 'process' : 'vcpu',
        pid: e.pid,
        comm: e.comm ?? (e.pid !== null ? comms.get(e.pid) ?? '' : ''),
        vm: e.vm,
        vcpu: e.vcpu,
        vcpuLabel: e.vcpu_label ?? (e.vcpu === null ? '-' : String(e.vcpu)),
      };
      if (e.exits) {
        const by: Record<string, Counter> = {};
        let cur = 0;
        let prev = 0;
        let base = 0;
        for (const [r, n] of Object.entries(e.exits)) {
          by[r] = counter(n, p?.exits?.[r], b?.exits?.[r], dt)!;
          cur += n;
          prev += p?.exits?.[r] ?? 0;
          base += b?.exits?.[r] ?? 0;
        }
        row.byReason = by;
        row.exits = counter(cur, prev, base, dt);
      }
      row.ioctls = counter(e.ioctls, p?.ioctls, b?.ioctls, dt);
      row.errors = counter(e.errors, p?.errors, b?.errors, dt);
      row.hwExits = counter(e.hw_exits, p?.hw_exits, b?.hw_exits, dt);
      row.runP50 = intervalQuantile(e.run_latency, p?.run_latency, 0.5);
      row.runP99 = intervalQuantile(e.run_latency, p?.run_latency, 0.99);
      row.handlingP99 = intervalQuantile(e.handling, p?.handling, 0.99);
      return row;
    });
    // Exit reasons by total over the process rows (each sums its vCPUs), or the vCPU rows when none.
    const tops = rows.some((r) => r.level === 'process') ? rows.filter((r) => r.level === 'process') : rows;
    for (const r of tops) for (const [name, c] of Object.entries(r.byReason ?? {})) reasonTotals.set(name, (reasonTotals.get(name) ?? 0) + c.total);
    this.prev = s;
    this.prevBy.clear();
    for (const e of s.entities) this.prevBy.set(keyOf(e), e);
    const reasons = [...reasonTotals].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([r]) => r);
    return { t_ns: s.t_ns, interval_s: dt, since_s: since, rows, reasons, processes: s.processes, lost: s.lost - (this.base?.lost ?? 0), notes: s.notes };
  }

  /** Totals start again from the last snapshot taken. */
  reset(): void {
    this.rebase(this.prev);
  }

  private rebase(s: TopSnapshot | undefined): void {
    this.base = s;
    this.baseBy.clear();
    for (const e of s?.entities ?? []) this.baseBy.set(keyOf(e), e);
  }
}
