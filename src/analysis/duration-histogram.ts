/**
 * A sparse histogram of durations for the exit-path statistics (VMM handling time, KVM_RUN latency per
 * exit reason), where one capture needs many small histograms: one per vCPU and exit key.
 *
 * Why not exact percentiles: a full capture can hold millions of KVM_RUNs, and keeping every sample per
 * key would grow without bound. Why not the summary's dense LatencyHistogram as is: it allocates all
 * 1600 buckets (12.8 KB) up front, which is fine for one histogram per ioctl name but not for hundreds of
 * (vCPU, exit) keys. This one uses the same bucket rule (LatencyHistogram.bucket/bounds: 32 buckets per
 * power of two) but stores only the buckets that were hit, so a key costs a few hundred bytes. Percentiles
 * are the holding bucket's midpoint clamped to the exact min/max: within 1.6 % of the exact value.
 */
import { LatencyHistogram } from '../decode/summary.js';
import type { DurationStats } from '../decode/records.js';

export class DurationHistogram {
  private readonly buckets = new Map<number, number>();
  count = 0;
  min = Infinity;
  max = 0;
  sum = 0;

  /** Add one duration (ns); negative or non-finite values are ignored. */
  add(ns: number): void {
    if (!(ns >= 0) || !Number.isFinite(ns)) return;
    const b = LatencyHistogram.bucket(ns);
    this.buckets.set(b, (this.buckets.get(b) ?? 0) + 1);
    this.count++;
    this.sum += ns;
    if (ns < this.min) this.min = ns;
    if (ns > this.max) this.max = ns;
  }

  /** Nearest-rank quantile, q in [0, 1]. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (const b of [...this.buckets.keys()].sort((x, y) => x - y)) {
      seen += this.buckets.get(b)!;
      if (seen >= rank) {
        const [lo, hi] = LatencyHistogram.bounds(b);
        return Math.min(this.max, Math.max(this.min, Math.round((lo + hi) / 2)));
      }
    }
    return this.max;
  }

  stats(): DurationStats {
    return {
      count: this.count,
      min_ns: this.count ? this.min : 0,
      p50_ns: this.quantile(0.5),
      p90_ns: this.quantile(0.9),
      p99_ns: this.quantile(0.99),
      max_ns: this.max,
      sum_ns: this.sum,
    };
  }

  /** Buckets in use (what this histogram costs in memory). */
  get size(): number {
    return this.buckets.size;
  }
}
