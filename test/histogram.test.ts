/**
 * The one histogram (src/decode/histogram.ts) on plain numbers: the log-linear bucket rule at both
 * precisions (user space's 32 per octave, the kernel's lat_bucket() with 4), quantiles against the exact
 * sorted samples (bound: |estimate − exact| ≤ exact / 64, exact / 8 for kernel buckets), exact
 * count/min/max/sum, sparse allocation, the JSON export.
 */
import { describe, expect, it } from 'vitest';
import { KT_AGG_BUCKETS } from '../src/bpf/event-layout.js';
import {
  BUCKETS_PER_OCTAVE,
  bucketBounds,
  bucketOf,
  DurationHistogram,
  KERNEL_SUB_BITS,
  kernelBucket,
  kernelQuantile,
  SUB_BITS,
} from '../src/decode/histogram.js';

/** A seeded skewed sample set: `n` integers from `lo` to about `lo + span`. */
function skewed(n: number, lo: number, span: number, power: number, seed = 12345): number[] {
  const out: number[] = [];
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    out.push(Math.floor(lo + (x / 2 ** 31) ** power * span));
  }
  return out;
}

const nearestRank = (sorted: number[], q: number): number => sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1];

describe('bucket rule', () => {
  it.each([0, 1, 31, 32, 33, 63, 64, 1000, 8191, 2 ** 31 - 1, 2 ** 31, 2 ** 32 + 7, 2 ** 52, 2 ** 53 - 1])('bounds of %d’s bucket contain it', (v) => {
    for (const s of [SUB_BITS, KERNEL_SUB_BITS]) {
      const [lo, hi] = bucketBounds(bucketOf(v, s), s);
      expect(lo).toBeLessThanOrEqual(v);
      expect(hi).toBeGreaterThanOrEqual(v);
    }
  });

  it.each([SUB_BITS, KERNEL_SUB_BITS])('sub-bits %d: buckets tile the integers, each at most 1/2^s of its value wide', (s) => {
    for (let b = 1; b < 49 << s; b++) { // every bucket below 2^53 (above it not every integer is a double)
      const [lo, hi] = bucketBounds(b, s);
      expect(lo).toBe(bucketBounds(b - 1, s)[1] + 1);
      expect(hi - lo + 1).toBeLessThanOrEqual(Math.max(1, lo / (1 << s)));
      expect(bucketOf(lo, s)).toBe(b);
      expect(bucketOf(hi, s)).toBe(b);
    }
  });

  it('values past 2^54 fold into the last bucket; fractions go with their floor', () => {
    expect(bucketOf(2 ** 60)).toBe(bucketOf(2 ** 54 - 1));
    expect(bucketOf(1000.7)).toBe(bucketOf(1000));
    expect(bucketOf(31.9)).toBe(31);
  });
});

describe('kernel buckets (lat_bucket in bpf/kt_aggregate.bpf.h)', () => {
  it.each([
    [0, 0],
    [3, 3],
    [4, 4],
    [7, 7],
    [8, 8],
    [9, 8],
    [10, 9],
    [15, 11],
    [16, 12],
    [1023, 35],
    [1024, 36],
    [8000, 47], // 2^12 ≤ 8000 < 2^13: e = 12, the two bits below the top one are 0b11 → (12 - 1) * 4 + 3
    [2 ** 33 - 1, 127],
    [2 ** 40, 127], // past the last bucket: folded into it
  ])('%d ns → bucket %d, the kernel’s formula (e - 1) * 4 + ((ns >> (e - 2)) & 3)', (ns, bucket) => {
    expect(kernelBucket(ns)).toBe(bucket);
    if (ns >= 4) {
      const e = Math.floor(Math.log2(ns));
      expect(kernelBucket(ns)).toBe(Math.min(KT_AGG_BUCKETS - 1, (e - 1) * 4 + (Math.floor(ns / 2 ** (e - 2)) & 3)));
    }
    if (ns < 2 ** 33) {
      const [lo, hi] = bucketBounds(bucket, KERNEL_SUB_BITS);
      expect(ns).toBeGreaterThanOrEqual(lo);
      expect(ns).toBeLessThanOrEqual(hi);
    }
  });

  const hist = (buckets: Record<number, number>): number[] => {
    const h = new Array<number>(KT_AGG_BUCKETS).fill(0);
    for (const [b, n] of Object.entries(buckets)) h[Number(b)] = n;
    return h;
  };

  it('quantiles: nearest rank, bucket midpoint, clamped to the exact min and max', () => {
    // 90 calls in bucket 47 = [7168, 8191], 10 in bucket 52 = [16384, 20479]
    expect(bucketBounds(47, KERNEL_SUB_BITS)).toEqual([7168, 8191]);
    expect(bucketBounds(52, KERNEL_SUB_BITS)).toEqual([16384, 20479]);
    const h = hist({ 47: 90, 52: 10 });
    expect(kernelQuantile({ hist: h, maxNs: 17000 }, 0.5)).toBe(7680);
    expect(kernelQuantile({ hist: h, maxNs: 17000 }, 0.9)).toBe(7680);
    expect(kernelQuantile({ hist: h, maxNs: 17000 }, 0.91)).toBe(17000); // midpoint 18432 clamped to the max
    expect(kernelQuantile({ hist: h, maxNs: 17000, minNs: 8000 }, 0.5)).toBe(8000); // clamped to the min
    expect(kernelQuantile({ hist: hist({}), maxNs: 0 }, 0.5)).toBe(0);
  });

  it('quantiles within exact / 8 of the sorted samples', () => {
    const values = skewed(50_000, 300, 2e6, 3);
    const h = new Array<number>(KT_AGG_BUCKETS).fill(0);
    for (const v of values) h[kernelBucket(v)]++;
    const sorted = [...values].sort((a, b) => a - b);
    for (const q of [0.01, 0.5, 0.9, 0.99, 0.999]) {
      const exact = nearestRank(sorted, q);
      expect(Math.abs(kernelQuantile({ hist: h, maxNs: sorted.at(-1)!, minNs: sorted[0] }, q) - exact)).toBeLessThanOrEqual(exact / 8);
    }
  });
});

describe('DurationHistogram', () => {
  it.each([
    [[5], 0.5, 5],
    [[1, 2, 3], 0.5, 2],
    [[10, 20, 30, 40], 0.99, 40],
    [[3, 5, 7], 0.9, 7],
  ])('exact below 32: %j q=%d → %d', (values, q, want) => {
    const h = new DurationHistogram();
    for (const v of values) h.add(v);
    expect(h.quantile(q)).toBe(want);
  });

  it.each([
    ['uniform 1..10000', Array.from({ length: 10000 }, (_, i) => i + 1)],
    ['uniform steps of 7', Array.from({ length: 20000 }, (_, i) => 1000 + i * 7)],
    ['constant', Array.from({ length: 100 }, () => 8100)],
    ['bimodal', [...Array.from({ length: 990 }, () => 8000), ...Array.from({ length: 10 }, () => 1_000_000)]],
    ['skewed 500 ns … 50 ms', skewed(200_000, 500, 5e7, 3)],
    ['seconds (past 2^31)', skewed(5000, 2 ** 31 - 1000, 2 ** 36, 2, 7)],
  ])('%s: every quantile within exact / 64 of the sorted samples; count/min/max/sum exact', (_l, values) => {
    const h = new DurationHistogram();
    for (const v of values) h.add(v);
    const sorted = [...values].sort((a, b) => a - b);
    for (const q of [0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1]) {
      const exact = nearestRank(sorted, q);
      expect(Math.abs(h.quantile(q) - exact), `q=${q} exact=${exact}`).toBeLessThanOrEqual(exact / 64);
    }
    const s = h.stats();
    expect([s.count, s.min_ns, s.max_ns, s.sum_ns]).toEqual([values.length, sorted[0], sorted.at(-1), values.reduce((a, b) => a + b, 0)]);
    expect([s.p50_ns, s.p90_ns, s.p99_ns]).toEqual([h.quantile(0.5), h.quantile(0.9), h.quantile(0.99)]);
  });

  it('ignores negative and non-finite values; empty stats are zeros', () => {
    const h = new DurationHistogram();
    for (const v of [-1, NaN, Infinity, -Infinity]) h.add(v);
    expect(h.stats()).toEqual({ count: 0, min_ns: 0, p50_ns: 0, p90_ns: 0, p99_ns: 0, max_ns: 0, sum_ns: 0 });
    expect(h.toJSON()).toEqual({ bounds_ns: [], counts: [] });
    expect(h.allocated).toBe(0);
  });

  it('sparse: counters only for the octaves between the lowest and highest hit, whichever comes first', () => {
    const small = new DurationHistogram();
    for (let v = 4096; v < 8192; v += 3) small.add(v); // one octave
    expect(small.allocated).toBe(BUCKETS_PER_OCTAVE);
    const down = new DurationHistogram();
    for (const v of [1e6, 1e3, 5e5, 2e3]) down.add(v); // grows downwards, then fills in
    expect(down.allocated).toBe(BUCKETS_PER_OCTAVE * (Math.floor(Math.log2(1e6)) - Math.floor(Math.log2(1e3)) + 1));
    expect(down.size).toBe(4);
    expect(down.quantile(0)).toBe(1000);
    expect(down.quantile(1)).toBe(1e6);
    const wide = new DurationHistogram();
    for (let v = 1; v < 1e12; v *= 1.01) wide.add(v);
    expect(wide.allocated).toBeLessThanOrEqual(BUCKETS_PER_OCTAVE * Math.ceil(Math.log2(1e12)));
  });

  it('JSON export: non-empty buckets ascending, exclusive upper bounds, counts summing to count', () => {
    const h = new DurationHistogram();
    const values = skewed(10_000, 100, 1e6, 2);
    for (const v of values) h.add(v);
    const j = h.toJSON();
    expect(j.counts.reduce((a, b) => a + b, 0)).toBe(values.length);
    expect(j.counts.every((n) => n > 0)).toBe(true);
    for (let k = 1; k < j.bounds_ns.length; k++) expect(j.bounds_ns[k]).toBeGreaterThan(j.bounds_ns[k - 1]);
    // Each sample's bucket is listed, under its exclusive upper bound.
    const listed = new Set(j.bounds_ns);
    for (const v of values) expect(listed.has(bucketBounds(bucketOf(v))[1] + 1)).toBe(true);
    expect(j.bounds_ns.length).toBe(h.size);
  });
});
