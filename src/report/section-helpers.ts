/**
 * Small pieces the report's sections share (exit-path-section.ts, hw-exit-section.ts): aligned text tables,
 * percentages, the min/p50/p90/p99/max cells of a duration spread, and the HTML helpers a section gets.
 */
import type { DurationStats } from '../decode/records.js';
import { formatDuration as d } from '../decode/format.js';

/** Rows as aligned columns: the first left-aligned, the rest right-aligned, two spaces apart. */
export function textTable(rows: string[][], indent = ''): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => indent + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd());
}

export const pct = (p: number): string => `${p.toFixed(2)}%`;

/** min, p50, p90, p99, max as durations ("-" each when there is nothing). */
export const spread = (s: DurationStats): string[] => (s.count ? [d(s.min_ns), d(s.p50_ns), d(s.p90_ns), d(s.p99_ns), d(s.max_ns)] : ['-', '-', '-', '-', '-']);

export interface HtmlHelpers {
  esc: (s: unknown) => string;
  /** A count element carrying its reportCounts() key. */
  count: (key: string, n: number) => string;
}

/** `<td>` cells of a spread, sortable by their data-v. */
export const spreadTds = (s: DurationStats): string =>
  (s.count ? [s.min_ns, s.p50_ns, s.p90_ns, s.p99_ns, s.max_ns] : []).map((v) => `<td data-v="${v}">${d(v)}</td>`).join('') || '<td>-</td>'.repeat(5);
