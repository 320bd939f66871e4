/**
 * A bounded latency histogram: log-linear buckets (each power of two split into SUB equal parts, so a
 * bucket's width is at most 1/SUB = 6.25% of its value), exact count/min/max/sum. Memory stays at most a
 * few hundred counters however many calls a trace holds, which is what lets `report` stream million-record
 * files. A percentile is interpolated linearly inside the bucket holding its rank, clamped to [min, max].
 */

const SUB = 16;

export interface HistogramJson {
  /** Upper bound (ns, exclusive) of each non-empty bucket, ascending. */
  bounds_ns: number[];
  counts: number[];
}

export interface LatencySummary {
  count: number;
  min_ns: number;
  p50_ns: number;
  p90_ns: number;
  p99_ns: number;
  max_ns: number;
  mean_ns: number;
}

function bucketOf(v: number): number {
  if (v < 1) return 0;
  const e = Math.floor(Math.log2(v));
  const sub = Math.min(SUB - 1, Math.floor((v / 2 ** e - 1) * SUB));
  return 1 + e * SUB + sub;
}

function upperBound(b: number): number {
  if (b === 0) return 1;
  const e = Math.floor((b - 1) / SUB);
  const sub = (b - 1) % SUB;
  return 2 ** e * (1 + (sub + 1) / SUB);
}

export class LatencyHistogram {
  private readonly buckets = new Map<number, number>();
  count = 0;
  min = Infinity;
  max = 0;
  sum = 0;

  add(ns: number): void {
    if (!Number.isFinite(ns) || ns < 0) return;
    const b = bucketOf(ns);
    this.buckets.set(b, (this.buckets.get(b) ?? 0) + 1);
    this.count++;
    this.sum += ns;
    if (ns < this.min) this.min = ns;
    if (ns > this.max) this.max = ns;
  }

  /** The value at quantile q (0..1). */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (const b of [...this.buckets.keys()].sort((x, y) => x - y)) {
      const n = this.buckets.get(b)!;
      if (seen + n >= rank) {
        const lo = Math.max(this.min, b === 0 ? 0 : upperBound(b - 1));
        const hi = Math.min(this.max, upperBound(b));
        return Math.round(lo + ((hi - lo) * (rank - seen)) / n);
      }
      seen += n;
    }
    return this.max;
  }

  summary(): LatencySummary {
    return {
      count: this.count,
      min_ns: this.count ? this.min : 0,
      p50_ns: this.quantile(0.5),
      p90_ns: this.quantile(0.9),
      p99_ns: this.quantile(0.99),
      max_ns: this.max,
      mean_ns: this.count ? Math.round(this.sum / this.count) : 0,
    };
  }

  toJSON(): HistogramJson {
    const keys = [...this.buckets.keys()].sort((x, y) => x - y);
    return { bounds_ns: keys.map((b) => Math.round(upperBound(b))), counts: keys.map((b) => this.buckets.get(b)!) };
  }
}
