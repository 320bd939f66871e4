/**
 * A sparse histogram of durations for the exit-path statistics (VMM handling time, KVM_RUN latency per
 * exit reason), where one capture needs many small histograms: one per vCPU and exit key.
 *
 * Why not exact percentiles: a full capture can hold millions of KVM_RUNs, and keeping every sample per
 * key would grow without bound. Why not the summary's dense LatencyHistogram as is: it allocates all
 * 1600 buckets (12.8 KB) up front, which is fine for one histogram per ioctl name but not for hundreds of
 * (vCPU, exit) keys. This one uses the same bucket rule (LatencyHistogram.bucket/bounds: 32 buckets per
 * power of two) but allocates only the octaves that were hit (32 counts, 256 bytes each), so a key costs a
 * few hundred bytes — and an add is an array increment, not a Map update (it runs up to three times per
 * KVM_RUN record). Percentiles are the holding bucket's midpoint clamped to the exact min/max: within 1.6 %
 * of the exact value.
 */
import { LatencyHistogram } from '../decode/summary.js';
import type { DurationStats } from '../decode/records.js';

/** Buckets per octave in LatencyHistogram's rule (the first "octave" is the exact values 0…31). */
const PER_OCTAVE = 32;

export class DurationHistogram {
  /** Counts by octave (bucket >> 5), each allocated on its first hit. */
  private readonly octaves: Array<Float64Array | undefined> = [];
  count = 0;
  min = Infinity;
  max = 0;
  sum = 0;

  /** Add one duration (ns); negative or non-finite values are ignored. */
  add(ns: number): void {
    if (!(ns >= 0) || !Number.isFinite(ns)) return;
    const b = LatencyHistogram.bucket(ns);
    const o = b >> 5;
    let counts = this.octaves[o];
    if (counts === undefined) {
      while (this.octaves.length < o) this.octaves.push(undefined);
      counts = this.octaves[o] = new Float64Array(PER_OCTAVE);
    }
    counts[b & (PER_OCTAVE - 1)]++;
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
    for (let o = 0; o < this.octaves.length; o++) {
      const counts = this.octaves[o];
      if (counts === undefined) continue;
      for (let i = 0; i < PER_OCTAVE; i++) {
        seen += counts[i];
        if (counts[i] > 0 && seen >= rank) {
          const [lo, hi] = LatencyHistogram.bounds(o * PER_OCTAVE + i);
          return Math.min(this.max, Math.max(this.min, Math.round((lo + hi) / 2)));
        }
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

  /** Buckets in use. */
  get size(): number {
    let n = 0;
    for (const counts of this.octaves) if (counts) for (const c of counts) if (c > 0) n++;
    return n;
  }
}
