/**
 * Summary statistics for a handful of rounds: median and min–max (no means: one noisy round on a shared
 * 2-core machine should not move the headline number).
 */

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(values: Array<number | null | undefined>): Spread | null {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
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
