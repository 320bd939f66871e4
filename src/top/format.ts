/** Compact numbers for `top`'s columns: rates and counts that fit 7–8 characters, durations with units. */
import { formatDuration } from '../decode/format.js';

/** 0, 8.5, 850, 12.3k, 123k, 1.23M. */
export function fmtRate(n: number): string {
  if (!Number.isFinite(n)) return '-';
  const a = Math.abs(n);
  if (a === 0) return '0';
  if (a < 10) return n.toFixed(1);
  if (a < 1000) return String(Math.round(n));
  if (a < 100_000) return `${(n / 1000).toFixed(1)}k`;
  if (a < 1_000_000) return `${Math.round(n / 1000)}k`;
  if (a < 100_000_000) return `${(n / 1e6).toFixed(2)}M`;
  return `${Math.round(n / 1e6)}M`;
}

/** Exact below a million, then 1.23M. */
export function fmtCount(n: number): string {
  return n < 1_000_000 ? String(n) : `${(n / 1e6).toFixed(2)}M`;
}

/** A duration, or "-" when not measured. */
export function fmtNs(ns: number | undefined): string {
  return ns === undefined ? '-' : formatDuration(ns);
}
