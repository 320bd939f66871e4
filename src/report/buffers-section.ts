/**
 * The copied-buffers sections. Where the copied-buffer flags come from, shared by `report` (text and HTML) and the attach summary: per
 * copy hook (the kernel function it observes) attached or not and why, and per ioctl how many copies were
 * observed by a hook and how many derived from the copy rules (no attached hook sees their routine). Counts
 * carry the reportCounts() keys (`ioctl.<name>.observed_copies`, `.derived_copies`) so the three report
 * formats can be checked against each other. And the HTML bars of flagged buffers per ioctl.
 */
import type { CopySourceCounts, HookStatus } from '../decode/records.js';
import { textTable } from './exit-path-section.js';
import type { ReportModel } from './model-types.js';

export interface CopySourceRow extends Pick<CopySourceCounts, 'observed' | 'derived'> {
  name: string;
  unknown: number;
}

/** One line per copy hook: "memdup_user: attached (kt_memdup_user_fentry)" / "_copy_to_user: not attached (…)". */
export function hooksText(hooks: Record<string, HookStatus> | null | undefined, indent = '  '): string[] {
  const entries = Object.entries(hooks ?? {});
  if (!entries.length) return [];
  const on = entries.filter(([, h]) => h.attached).map(([n]) => n);
  const out = [`copy hooks: ${on.length ? `${on.join(', ')} attached` : 'none attached'} (copies through the routines they see are observed, the rest derived)`];
  for (const [name, h] of entries) {
    out.push(`${indent}${name}: ${h.attached ? `attached (${h.program ?? h.reason})` : `not attached (${h.reason})`}`);
  }
  return out;
}

/** The per-ioctl table of observed / derived / unknown-length copies (only ioctls that copied something). */
export function copySourcesText(rows: readonly CopySourceRow[], indent = '  '): string[] {
  const used = rows.filter((r) => r.observed + r.derived + r.unknown > 0);
  if (!used.length) return [];
  const t = [['ioctl', 'observed', 'derived', 'unknown']];
  for (const r of used) t.push([r.name, String(r.observed), String(r.derived), String(r.unknown)]);
  return ['copies per ioctl, by source:', ...textTable(t, indent)];
}

export interface HtmlHelpers {
  esc: (s: unknown) => string;
  count: (key: string, n: number, cls?: string) => string;
}

/** The HTML section: the hook table and the per-ioctl observed / derived counts. */
export function copySourcesHtml(
  m: { hooks: Record<string, HookStatus> | null; ioctls: ReadonlyArray<{ name: string; observed_copies: number; derived_copies: number; unknown_copies: number }>; totals: { observed_copies: number; derived_copies: number } },
  h: HtmlHelpers,
): string {
  const hooks = Object.entries(m.hooks ?? {});
  const hookRows = hooks
    .map(([name, s]) => `<tr><td><code>${h.esc(name)}</code></td><td class="l">${s.attached ? 'attached' : '<b>not attached</b>'}</td><td class="l mono">${h.esc(s.attached ? (s.program ?? s.reason) : s.reason)}</td></tr>`)
    .join('\n');
  const hookTable = hooks.length
    ? `<table id="hook-table"><thead><tr><th class="l">copy hook</th><th class="l">state</th><th class="l">program / why not</th></tr></thead><tbody>${hookRows}</tbody></table>`
    : '<p class="empty">The capture did not record which copy hooks were attached (a capture from an older kvm-trace, or none was opened).</p>';
  const rows = m.ioctls.filter((i) => i.observed_copies + i.derived_copies + i.unknown_copies > 0);
  const ioctlRows = rows
    .map((i) => {
      const k = (f: string) => `ioctl.${i.name}.${f}`;
      return `<tr><td><code>${h.esc(i.name)}</code></td><td>${h.count(k('observed_copies'), i.observed_copies)}</td><td>${h.count(k('derived_copies'), i.derived_copies)}</td><td>${i.unknown_copies}</td></tr>`;
    })
    .join('\n');
  const ioctlTable = rows.length
    ? `<table id="copy-source-table"><thead><tr><th class="l">ioctl</th><th>observed</th><th>derived</th><th title="derived, length not revealed by the capture">unknown len</th></tr></thead><tbody>${ioctlRows}</tbody></table>`
    : '<p class="empty">No copies.</p>';
  return `
<section id="copy-sources"><h2>Copies: observed and derived</h2>
<p class="lede">A copy hook (fentry or kprobe on a kernel copy routine) observes the copies made through the routines it sees; every other copy is derived from the decoded argument and the kernel's copy rules. Observed ${h.count('total.observed_copies', m.totals.observed_copies)}, derived ${h.count('total.derived_copies', m.totals.derived_copies)}.</p>
${hookTable}
${ioctlTable}
</section>`;
}

/** Bars per ioctl: buffers copied, crossing a line more than needed, misaligned. */
export function flagBarsHtml(m: Pick<ReportModel, 'ioctls' | 'line_size'>, helpers: HtmlHelpers & { num: (n: number) => string }): string {
  const { esc, num } = helpers;
  const rows = m.ioctls.filter((i) => i.copies > 0);
  if (!rows.length) return '<p class="empty">No copied buffers with a known length in this trace.</p>';
  const maxC = Math.max(...rows.map((i) => i.copies));
  const barWidth = 360;
  const rowH = 22;
  const nameW = 230;
  const h = rows.length * rowH + 8;
  const bars = rows
    .map((i, k) => {
      const y = 4 + k * rowH;
      const sw = (n: number) => (n / maxC) * barWidth;
      return `<text class="rlabel" x="0" y="${y + 13}">${esc(i.name)}</text>
<rect x="${nameW}" y="${y + 2}" width="${sw(i.copies).toFixed(1)}" height="6" rx="2" fill="#d0d5dd"><title>${i.copies} copies</title></rect>
<rect x="${nameW}" y="${y + 9}" width="${sw(i.cacheline_cross).toFixed(1)}" height="5" rx="2" fill="#e8590c"><title>${i.cacheline_cross} crossing</title></rect>
<rect x="${nameW}" y="${y + 15}" width="${sw(i.misaligned).toFixed(1)}" height="5" rx="2" fill="#c2255c"><title>${i.misaligned} misaligned</title></rect>
<text class="tick" x="${nameW + sw(i.copies) + 6}" y="${y + 13}">${num(i.copies)} copied · ${num(i.cacheline_cross)} crossing · ${num(i.misaligned)} misaligned</text>`;
    })
    .join('');
  return `<svg id="flagbars" width="${nameW + barWidth + 220}" height="${h}" viewBox="0 0 ${nameW + barWidth + 220} ${h}">${bars}</svg>
<p class="legend"><span><span class="swatch" style="background:#d0d5dd"></span>buffers copied</span><span><span class="swatch" style="background:#e8590c"></span>crossing a ${m.line_size}-byte line more than needed</span><span><span class="swatch" style="background:#c2255c"></span>misaligned for its type</span></p>`;
}
