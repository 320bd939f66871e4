/**
 * The exit-path section, shared by `report` (text and HTML) and the attach summary: the perf-kvm-stat-style
 * table of KVM_RUN returns per exit reason and, where the kernel emits kvm:kvm_exit, of hardware exits
 * (hw-exit-section.ts), and the VMM handling time per vCPU and exit. Both renderings take the summary-record
 * shapes (records.ts), so the report and the summary print the same table. Counts carry the reportCounts()
 * keys (`exit.<reason>.samples`, `hw.<isa>.<reason>.samples`, `handling.<vcpu>.re_entries`, …) so the three
 * report formats can be checked against each other.
 */
import type { DurationStats, ExitReasonStats, HwExitStats, HwExitsStatus, RunSplit, VcpuHandlingStats, VmmHandlingSummary } from '../decode/records.js';
import { formatDuration as d } from '../decode/format.js';
import { hwCounts, hwHtml, hwText } from './hw-exit-section.js';
import { type HtmlHelpers, pct, spread, textTable } from './section-helpers.js';

export interface ExitPathData {
  exit_stats?: ExitReasonStats[] | null;
  vmm_handling?: VmmHandlingSummary | null;
  hw_exits?: HwExitsStatus | null;
  hw_exit_stats?: HwExitStats[] | null;
  run_split?: RunSplit[] | null;
}

/** "pid 4242 vm 0 vcpu 1 fd 11" ("… vcpu 1" in an aggregate capture): how a vCPU is named in the text, the HTML and the count keys. */
export function vcpuLabel(v: Pick<VcpuHandlingStats, 'pid' | 'vm' | 'vcpu' | 'fd'>): string {
  return `pid ${v.pid} vm ${v.vm ?? '?'} vcpu ${v.vcpu ?? '?'}${v.fd === null ? '' : ` fd ${v.fd}`}`;
}

/** Count key prefix of a vCPU: "handling.4242/0/1/11" ("handling.4242/0/1/-" without an fd). */
export const vcpuKey = (v: Pick<VcpuHandlingStats, 'pid' | 'vm' | 'vcpu' | 'fd'>): string => `handling.${v.pid}/${v.vm ?? '?'}/${v.vcpu ?? '?'}/${v.fd ?? '-'}`;

export { textTable, type HtmlHelpers };

/** The perf-kvm-stat-style table as text lines (empty when there is nothing to show). */
export function exitStatsText(rows: ExitReasonStats[] | null | undefined): string[] {
  if (!rows?.length) return [];
  const out = ['KVM_RUN returns by exit reason (userspace exits; time = KVM_RUN latency):'];
  const t = [['exit reason', 'samples', 'samples%', 'time%', 'min', 'p50', 'p90', 'p99', 'max']];
  let n = 0;
  for (const r of rows) {
    n += r.samples;
    t.push([r.reason, String(r.samples), pct(r.pct), pct(r.time_pct), ...spread(r)]);
  }
  t.push(['total', String(n), pct(100), pct(100)]);
  out.push(...textTable(t, '  '));
  const untimed = rows.reduce((a, r) => a + (r.untimed ?? 0), 0);
  if (untimed) out.push(`  ${untimed} calls seen without their enter are counted but not timed`);
  return out;
}

/**
 * VMM handling time per vCPU and exit as text lines (empty when there is nothing to show). The first
 * `detailed` vCPUs get a table per exit; the rest one line each (the JSON has them all).
 */
export function vmmHandlingText(h: VmmHandlingSummary | null | undefined, detailed = Infinity): string[] {
  if (!h?.vcpus.length) return [];
  const out = [`VMM handling time (KVM_RUN return → the same vCPU's next KVM_RUN), per vCPU and exit (MMIO in ${h.mmio_granule}-byte ranges):`];
  const brief = h.vcpus.slice(detailed);
  for (const v of h.vcpus.slice(0, detailed)) {
    out.push(`  ${vcpuLabel(v)}${v.comm ? ` ${v.comm}` : ''}: re-entries ${v.total.count}  pending ${v.pending}`);
    const t = [['exit', 'count', 'min', 'p50', 'p90', 'p99', 'max']];
    for (const k of v.by_exit) t.push([k.key, String(k.count), ...spread(k)]);
    t.push(['all', String(v.total.count), ...spread(v.total)]);
    out.push(...textTable(t, '    '));
  }
  if (brief.length) {
    const t = [['vCPU (all exits)', 're-entries', 'pending', 'min', 'p50', 'p90', 'p99', 'max']];
    for (const v of brief) t.push([`${vcpuLabel(v)} ${v.comm}`, String(v.total.count), String(v.pending), ...spread(v.total)]);
    out.push(`  ${brief.length} more vCPUs (per-exit detail in the JSON summary and in \`report\`):`, ...textTable(t, '    '));
  }
  if (h.untimed || h.overlapped) out.push(`  not timed: ${h.untimed} re-entries seen without their enter, ${h.overlapped} overlapping another thread's KVM_RUN`);
  return out;
}

/** Every part, a blank line between; empty when none has anything. `detailed`: see vmmHandlingText. */
export function exitPathText(x: ExitPathData, detailed = Infinity): string[] {
  const parts = [exitStatsText(x.exit_stats), hwText(x), vmmHandlingText(x.vmm_handling, detailed)].filter((p) => p.length);
  return parts.flatMap((p, i) => (i ? ['', ...p] : p));
}

/** Count keys of the section (merged into reportCounts()). */
export function exitPathCounts(x: ExitPathData): Record<string, number> {
  const c: Record<string, number> = {};
  for (const r of x.exit_stats ?? []) c[`exit.${r.reason}.samples`] = r.samples;
  Object.assign(c, hwCounts(x));
  for (const v of x.vmm_handling?.vcpus ?? []) {
    const k = vcpuKey(v);
    c[`${k}.re_entries`] = v.total.count;
    c[`${k}.pending`] = v.pending;
    for (const e of v.by_exit) c[`${k}.exit.${e.key}`] = e.count;
  }
  return c;
}

/** The section as HTML: `<section id="exits">` with the exit table and the handling time per vCPU. */
export function exitPathHtml(x: ExitPathData, h: HtmlHelpers): string {
  const { esc, count } = h;
  const lede =
    '<p class="lede">Each exit reason KVM_RUN returned with, its share of calls and of KVM_RUN time (perf kvm stat style, with percentiles), and how long the VMM took to re-enter the vCPU after each kind of exit.</p>';
  return `\n<section id="exits"><h2>Exits and VMM handling time</h2>${lede}${exitPathTables(x, esc, count)}${hwHtml(x, h)}</section>`;
}

function exitPathTables(x: ExitPathData, esc: HtmlHelpers['esc'], count: HtmlHelpers['count']): string {
  const td = (s: DurationStats): string =>
    (s.count ? [s.min_ns, s.p50_ns, s.p90_ns, s.p99_ns, s.max_ns] : []).map((v) => `<td data-v="${v}">${d(v)}</td>`).join('') || '<td>-</td>'.repeat(5);
  const head = (first: string, mid: string): string => `<thead><tr><th class="l">${first}</th>${mid}<th>min</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr></thead>`;
  let html = '';
  const rows = x.exit_stats ?? [];
  if (rows.length) {
    const body = rows
      .map((r) => `<tr><td><code>${esc(r.reason)}</code></td><td data-v="${r.samples}">${count(`exit.${r.reason}.samples`, r.samples)}</td><td data-v="${r.pct}">${pct(r.pct)}</td><td data-v="${r.time_pct}">${pct(r.time_pct)}</td>${td(r)}</tr>`)
      .join('\n');
    html += `<h3>KVM_RUN returns by exit reason</h3><div class="scroll"><table class="sortable" id="exit-table">${head('exit reason', '<th>samples</th><th>samples%</th><th>time%</th>')}<tbody>${body}</tbody></table></div>`;
  } else {
    html += '<p class="empty">No KVM_RUN records: the per-exit table needs a full capture (not --aggregate).</p>';
  }
  const vcpus = x.vmm_handling?.vcpus ?? [];
  if (vcpus.length) {
    html += `<h3>VMM handling time per vCPU and exit</h3><p class="lede">From a KVM_RUN's return to the same vCPU's next KVM_RUN, keyed by the exit it returned (MMIO in ${x.vmm_handling!.mmio_granule}-byte ranges).</p>`;
    for (const v of vcpus) {
      const k = vcpuKey(v);
      const body = [...v.by_exit.map((e) => [e.key, `${k}.exit.${e.key}`, e] as const), ['all', `${k}.re_entries`, v.total] as const]
        .map(([label, key, s]) => `<tr><td><code>${esc(label)}</code></td><td data-v="${s.count}">${count(key, s.count)}</td>${td(s)}</tr>`)
        .join('\n');
      html += `<h4 class="mono">${esc(vcpuLabel(v))} ${esc(v.comm)} · pending ${count(`${k}.pending`, v.pending)}</h4><div class="scroll"><table class="sortable">${head('exit', '<th>count</th>')}<tbody>${body}</tbody></table></div>`;
    }
  }
  return html;
}
