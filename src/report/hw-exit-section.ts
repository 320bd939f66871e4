/**
 * Hardware exits in the report and the summary (attach --hw-exits): where the kernel emits kvm:kvm_exit, the
 * perf-kvm-stat-style table of in-kernel exits per reason (samples, %, time % and the spread of the time KVM
 * spent on each) and per vCPU where its time went (guest / KVM / VMM); where it does not, the one statement
 * saying so — and no table, rather than zeros that look like data.
 */
import type { HwExitStats, HwExitsStatus, RunSplit } from '../decode/records.js';
import { formatDuration as d } from '../decode/format.js';
import { type HtmlHelpers, pct, spread, spreadTds, textTable } from './section-helpers.js';

export interface HwData {
  hw_exits?: HwExitsStatus | null;
  hw_exit_stats?: HwExitStats[] | null;
  run_split?: RunSplit[] | null;
}

const share = (n: number, of: number): string => (of > 0 ? `${((n / of) * 100).toFixed(1)}%` : '-');

function splitRows(rows: RunSplit[]): string[][] {
  const t = [['vCPU', 'KVM_RUNs', 'hw exits', 'per run', 'max', 'guest', 'KVM', 'VMM']];
  for (const r of rows) {
    const all = r.guest_ns + r.kvm_ns + r.vmm_ns;
    t.push([
      `pid ${r.pid} vm ${r.vm ?? '?'} vcpu ${r.vcpu ?? '?'}`,
      String(r.runs),
      String(r.hw_exits),
      r.runs ? (r.hw_exits / r.runs).toFixed(2) : '-',
      String(r.max_hw_exits),
      `${d(r.guest_ns)} (${share(r.guest_ns, all)})`,
      `${d(r.kvm_ns)} (${share(r.kvm_ns, all)})`,
      `${d(r.vmm_ns)} (${share(r.vmm_ns, all)})`,
    ]);
  }
  return t;
}

/** Text lines: the statement when hardware exits were asked for, the tables when counted. */
export function hwText(x: HwData): string[] {
  if (!x.hw_exits) return [];
  if (!x.hw_exits.available) return [`hardware exits: ${x.hw_exits.statement}`];
  const out = [`Hardware exits (in-kernel, kvm:kvm_exit; time = in KVM until the next guest entry or the return to the VMM; names from ${x.hw_exits.names ?? 'the kernel'}):`];
  const rows = x.hw_exit_stats ?? [];
  const t = [['isa', 'exit reason', 'samples', 'samples%', 'time%', 'min', 'p50', 'p90', 'p99', 'max']];
  let n = 0;
  for (const r of rows) {
    n += r.samples;
    t.push([r.isa, r.reason, String(r.samples), pct(r.pct), pct(r.time_pct), ...spread(r)]);
  }
  t.push(['total', '', String(n), pct(100), pct(100)]);
  out.push(...textTable(t, '  '));
  if (x.run_split?.length) out.push('', 'Where each vCPU\'s time went (guest / in KVM / back in the VMM):', ...textTable(splitRows(x.run_split), '  '));
  return out;
}

/** Count keys: hw.<isa>.<reason>.samples. */
export function hwCounts(x: HwData): Record<string, number> {
  const c: Record<string, number> = {};
  for (const r of x.hw_exit_stats ?? []) c[`hw.${r.isa}.${r.reason}.samples`] = r.samples;
  return c;
}

/** HTML: the statement, or the hardware-exit table and the time split. */
export function hwHtml(x: HwData, h: HtmlHelpers): string {
  const { esc, count } = h;
  if (!x.hw_exits) return '';
  if (!x.hw_exits.available) return `<h3>Hardware exits</h3><p class="empty" id="hw-statement">${esc(x.hw_exits.statement)}</p>`;
  const body = (x.hw_exit_stats ?? [])
    .map(
      (r) =>
        `<tr><td>${esc(r.isa)}</td><td><code>${esc(r.reason)}</code></td><td data-v="${r.samples}">${count(`hw.${r.isa}.${r.reason}.samples`, r.samples)}</td><td data-v="${r.pct}">${pct(r.pct)}</td><td data-v="${r.time_pct}">${pct(r.time_pct)}</td>${spreadTds(r)}</tr>`,
    )
    .join('\n');
  let html = `<h3>Hardware exits</h3><p class="lede">In-kernel exits (kvm:kvm_exit) per reason; time is KVM's, until the next guest entry or the return to the VMM. Names from ${esc(x.hw_exits.names ?? 'the kernel')}.</p><div class="scroll"><table class="sortable" id="hw-exit-table"><thead><tr><th class="l">isa</th><th class="l">exit reason</th><th>samples</th><th>samples%</th><th>time%</th><th>min</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr></thead><tbody>${body}</tbody></table></div>`;
  const split = x.run_split ?? [];
  if (split.length) {
    const rows = splitRows(split);
    const tr = (cells: string[], tag: string): string => `<tr>${cells.map((c) => `<${tag}>${esc(c)}</${tag}>`).join('')}</tr>`;
    html += `<h4>Where each vCPU's time went</h4><div class="scroll"><table id="run-split"><thead>${tr(rows[0], 'th')}</thead><tbody>${rows.slice(1).map((r) => tr(r, 'td')).join('\n')}</tbody></table></div>`;
  }
  return html;
}
