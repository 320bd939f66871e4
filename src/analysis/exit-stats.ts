/**
 * The perf-kvm-stat-style table of userspace exits: per exit reason a KVM_RUN returned with, the number of
 * calls ("samples"), their share, the share of the summed KVM_RUN latency ("time"), and min/p50/p90/p99/max
 * of that latency. perf kvm stat reports hardware exits with min/max/avg; this reports what the VMM sees
 * (the KVM_RUN returns) with percentiles. Hardware exits join later where the kernel emits them.
 */
import type { ExitReasonStats, IoctlRecord } from '../decode/records.js';
import { DurationHistogram } from '../decode/histogram.js';
import { exitReasonOf } from './exit-key.js';

export class ExitStatsTracker {
  private readonly reasons = new Map<string, { h: DurationHistogram; untimed: number }>();
  private calls = 0;

  /** Feed a KVM_RUN ioctl record. */
  add(r: IoctlRecord): void {
    const reason = exitReasonOf(r);
    let a = this.reasons.get(reason);
    if (!a) this.reasons.set(reason, (a = { h: new DurationHistogram(), untimed: 0 }));
    this.calls++;
    if (r.no_enter === true) a.untimed++;
    else a.h.add(r.latency_ns);
  }

  get samples(): number {
    return this.calls;
  }

  /** Rows by samples, most first. */
  rows(): ExitReasonStats[] {
    let time = 0;
    for (const a of this.reasons.values()) time += a.h.sum;
    const pct = (n: number, of: number): number => (of > 0 ? Math.round((n / of) * 10000) / 100 : 0);
    return [...this.reasons]
      .map(([reason, a]) => {
        const samples = a.h.count + a.untimed;
        const row: ExitReasonStats = { reason, samples, pct: pct(samples, this.calls), time_pct: pct(a.h.sum, time), ...a.h.stats() };
        if (a.untimed) row.untimed = a.untimed;
        return row;
      })
      .sort((x, y) => y.samples - x.samples || x.reason.localeCompare(y.reason));
  }
}
