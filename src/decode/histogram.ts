/**
 * The one latency/duration histogram of kvm-trace, and the reading of the kernel's histograms.
 *
 * The bucket rule is log-linear, the one HdrHistogram and the BPF side use: values below 2^s are exact, then
 * each power of two is split into 2^s equal buckets. Bucket of v ≥ 2^s, with e = floor(log2 v) and
 * m = floor(v / 2^(e-s)) (the top s+1 bits, 2^s ≤ m < 2^(s+1)): ((e - s) << s) + m. User space keeps
 * s = 5 (32 buckets per octave: a bucket is at most 1/32 of its value wide); the kernel's lat_bucket()
 * (bpf/kt_aggregate.bpf.h, KT_AGG_BUCKETS in bpf/kvm_trace.h) computes the same formula with s = 2 and folds
 * everything past its last bucket into it, so kernel buckets are read with bucketBounds(b, KERNEL_SUB_BITS)
 * (kernelQuantile) rather than by a second histogram.
 *
 * Quantiles are nearest-rank: the value is the midpoint of the bucket holding the rank, clamped to the exact
 * min and max. For integer samples the estimate is within bucket width / 2 of the exact sorted sample at that
 * rank: at most exact / 64 here, exact / 8 for kernel buckets, and exact below 2^s.
 *
 * Why one sparse class: a capture keeps one histogram per ioctl name, per exit reason and per (vCPU, exit
 * key), hundreds of them, and a run can hold millions of samples, so neither samples nor all 1600 buckets
 * (12.8 KB) per histogram are kept. Counts live in one Float64Array covering only the octaves between the
 * smallest and the largest bucket hit, grown an octave-aligned window at a time; an add is a range check and
 * a typed-array increment (the summary adds once per record). count, min, max and sum are exact.
 */
import { KT_AGG_BUCKETS } from '../bpf/event-layout.js';
import type { DurationStats } from './records.js';

/** log2 of the buckets per power of two in user space (32), and in the kernel's lat_bucket() (4). */
export const SUB_BITS = 5;
export const KERNEL_SUB_BITS = 2;
export const BUCKETS_PER_OCTAVE = 1 << SUB_BITS;
/** Octaves above 2^53 hold no more integers: larger values are folded into the last one. */
const MAX_EXP = 53;

/** The bucket of a value ≥ 0 (ns) with 2^subBits buckets per power of two. */
export function bucketOf(v: number, subBits: number = SUB_BITS): number {
  const sub = 1 << subBits;
  if (v < sub) return Math.floor(v);
  if (v < 0x80000000) {
    // The common case without Math.log2: the octave is the top set bit (exact for integers, and the floor of
    // a fractional v has the same octave and mantissa).
    const i = v | 0;
    const e = 31 - Math.clz32(i);
    return ((e - subBits) << subBits) + (i >>> (e - subBits));
  }
  let e = Math.min(Math.floor(Math.log2(v)), MAX_EXP);
  if (2 ** e > v) e--; // log2 rounds up just below a power of two
  let m = Math.floor(v / 2 ** (e - subBits));
  if (m >= 2 * sub) m = 2 * sub - 1; // past 2^54: the last bucket
  return (e - subBits) * sub + m;
}

/** Smallest and largest integer of bucket `b` (bucketOf's inverse). */
export function bucketBounds(b: number, subBits: number = SUB_BITS): [number, number] {
  const sub = 1 << subBits;
  if (b < sub) return [b, b];
  const w = 2 ** (Math.floor(b / sub) - 1);
  const lo = (sub + (b % sub)) * w;
  return [lo, lo + w - 1];
}

/**
 * The nearest-rank quantile of dense counts whose index 0 is bucket `base`: midpoint of the bucket holding
 * the rank, clamped to [min, max]. `total` is the sum of the counts.
 */
function rankQuantile(counts: ArrayLike<number>, base: number, subBits: number, total: number, q: number, min: number, max: number): number {
  if (total === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= rank) {
      const [lo, hi] = bucketBounds(base + i, subBits);
      return Math.min(max, Math.max(min, Math.round((lo + hi) / 2)));
    }
  }
  return max;
}

/** The non-empty buckets of a histogram: exclusive upper bound (ns) of each, ascending, and their counts. */
export interface HistogramJson {
  bounds_ns: number[];
  counts: number[];
}

const EMPTY = new Float64Array(0);

/** A sparse log-linear histogram of durations (ns); exact count, min, max and sum. */
export class DurationHistogram {
  /** Counts of buckets base … base + counts.length - 1; base is a multiple of BUCKETS_PER_OCTAVE. */
  private counts: Float64Array = EMPTY;
  private base = 0;
  count = 0;
  min = Infinity;
  max = 0;
  sum = 0;

  /** Add one duration (ns); negative and non-finite values are ignored. */
  add(ns: number): void {
    if (!(ns >= 0 && ns < Infinity)) return;
    // bucketOf's common case inlined (this runs per record): below 2^31 the octave is the top set bit.
    let b: number;
    if (ns < 0x80000000) {
      const i = ns | 0;
      const e = 31 - Math.clz32(i);
      b = e < SUB_BITS ? i : ((e - SUB_BITS) << SUB_BITS) + (i >>> (e - SUB_BITS));
    } else b = bucketOf(ns);
    const j = b - this.base;
    const counts = this.counts;
    if (j >= 0 && j < counts.length) counts[j]++;
    else this.grow(b);
    this.count++;
    this.sum += ns;
    if (ns < this.min) this.min = ns;
    if (ns > this.max) this.max = ns;
  }

  /** Widen the window to the octave of bucket `b` and count it there. */
  private grow(b: number): void {
    const old = this.counts;
    let lo = b & -BUCKETS_PER_OCTAVE;
    let hi = lo + BUCKETS_PER_OCTAVE;
    if (old.length) {
      lo = Math.min(lo, this.base);
      hi = Math.max(hi, this.base + old.length);
    }
    const counts = new Float64Array(hi - lo);
    if (old.length) counts.set(old, this.base - lo);
    counts[b - lo]++;
    this.counts = counts;
    this.base = lo;
  }

  /** Nearest-rank quantile, q in [0, 1]: within exact / 64 of the sorted sample at that rank (see above). */
  quantile(q: number): number {
    return rankQuantile(this.counts, this.base, SUB_BITS, this.count, q, this.min, this.max);
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

  /** The non-empty buckets, for plotting (the report's per-ioctl histogram). */
  toJSON(): HistogramJson {
    const out: HistogramJson = { bounds_ns: [], counts: [] };
    for (let i = 0; i < this.counts.length; i++) {
      if (this.counts[i] === 0) continue;
      out.bounds_ns.push(bucketBounds(this.base + i)[1] + 1);
      out.counts.push(this.counts[i]);
    }
    return out;
  }

  /** Buckets in use. */
  get size(): number {
    let n = 0;
    for (const c of this.counts) if (c > 0) n++;
    return n;
  }

  /** Counters allocated (8 bytes each): a whole number of octaves, from the lowest to the highest one hit. */
  get allocated(): number {
    return this.counts.length;
  }
}

/**
 * The kernel's lat_bucket(): the bucket a latency (ns) lands in, in an in-kernel histogram of KT_AGG_BUCKETS
 * counts (bucketOf with KERNEL_SUB_BITS; everything from 2^33 ns on is folded into the last bucket).
 */
export function kernelBucket(ns: number): number {
  return Math.min(bucketOf(Math.max(0, ns), KERNEL_SUB_BITS), KT_AGG_BUCKETS - 1);
}

/**
 * A quantile (q in [0, 1]) of an in-kernel histogram (kt_agg_ioctl / kt_agg_hist counts, summed over CPUs):
 * nearest rank, the kernel bucket's midpoint clamped to the exact min (0 when unknown) and max; within
 * exact / 8 below 2^33 ns.
 */
export function kernelQuantile(h: { hist: ArrayLike<number>; maxNs: number; minNs?: number }, q: number): number {
  let total = 0;
  for (let i = 0; i < h.hist.length; i++) total += h.hist[i];
  return rankQuantile(h.hist, 0, KERNEL_SUB_BITS, total, q, Math.min(h.minNs ?? 0, h.maxNs), h.maxNs);
}
