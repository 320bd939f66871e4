/**
 * Summary statistics for a handful of rounds: median and min–max (one noisy round on a shared 2-core machine
 * should not move a headline median), and 95 % confidence intervals so a verdict says how sure it is:
 *  - a slowdown ratio is multiplicative, so its interval is Student's t over the logarithms of the per-round
 *    ratios (a geometric mean and its interval, both ≥ 0);
 *  - an additive figure (CPU µs per record, seconds) gets Student's t over the values.
 * A target is judged on the interval: pass when the whole interval meets it, fail when none of it does,
 * inconclusive in between (the machine was too noisy to tell, or too few rounds).
 */

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(values: Array<number | null | undefined>): Spread | null {
  const v = finite(values).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], n: v.length };
}

export function maxOf(values: Array<number | null | undefined>): number | null {
  const s = spread(values);
  return s ? s.max : null;
}

/** Round to `digits` significant decimals for JSON output (ratios 3, seconds 4). */
export function round(x: number | null | undefined, digits: number): number | null {
  if (typeof x !== 'number' || !Number.isFinite(x)) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function finite(values: Array<number | null | undefined>): number[] {
  return values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
}

/** Two-sided 95 % critical values of Student's t for 1 … 30 degrees of freedom; 1.96 beyond. */
const T95 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101,
  2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

export function t95(df: number): number {
  return df >= 1 && df <= T95.length ? T95[df - 1] : 1.96;
}

/** An estimate with its 95 % interval; with one value the interval is that value (n says how little it means). */
export interface Estimate {
  value: number;
  lo: number;
  hi: number;
  n: number;
}

/** Mean and its t interval. */
export function meanCi(values: Array<number | null | undefined>): Estimate | null {
  const v = finite(values);
  const n = v.length;
  if (n === 0) return null;
  const mean = v.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { value: mean, lo: mean, hi: mean, n };
  const sd = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  const h = (t95(n - 1) * sd) / Math.sqrt(n);
  return { value: mean, lo: mean - h, hi: mean + h, n };
}

/** Geometric mean of positive ratios and its t interval on the log scale. */
export function ratioCi(ratios: Array<number | null | undefined>): Estimate | null {
  const logs = finite(ratios).filter((r) => r > 0).map(Math.log);
  const m = meanCi(logs);
  return m && { value: Math.exp(m.value), lo: Math.exp(m.lo), hi: Math.exp(m.hi), n: m.n };
}

export type Verdict = 'pass' | 'fail' | 'inconclusive';

/** `est` against an upper bound: pass when its whole interval is at or below it, fail when all of it is above. */
export function atMost(est: Estimate, bound: number): Verdict {
  if (est.hi <= bound) return 'pass';
  if (est.lo > bound) return 'fail';
  return 'inconclusive';
}
