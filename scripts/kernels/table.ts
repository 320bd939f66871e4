/**
 * The matrix as text (kernel × check, then one line per failed check with its detail) and as the README's
 * "Supported kernels" Markdown table (kernel, KVM built in / module, strategy, hooks attached, observed vs
 * derived copies, result).
 */
import { CHECK_NAMES, checksOf, kernelOk, type KernelResult } from './result.js';

const mark = (s: 'ok' | 'fail' | 'n/a'): string => (s === 'ok' ? 'ok' : s === 'fail' ? 'FAIL' : 'n/a');

function kernelLabel(r: KernelResult): string {
  return r.kernel === 'host' ? `host ${r.release}` : r.kernel;
}

function pad(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? '')].length)));
  return rows.map((r) => r.map((c, i) => c + ' '.repeat(widths[i] - [...c].length)).join('  ').trimEnd()).join('\n');
}

export function textTable(results: readonly KernelResult[]): string {
  const names = [...CHECK_NAMES];
  const rows = [['kernel', ...names, 'time']];
  const notes: string[] = [];
  for (const r of results) {
    const checks = checksOf(r);
    const time = r.wall_s !== undefined ? `${r.wall_s.toFixed(0)} s` : r.checklist_s !== undefined ? `${r.checklist_s.toFixed(0)} s` : '';
    const never = r.failure !== undefined && r.release === '?';
    rows.push([kernelLabel(r), ...names.map((n) => (never ? '—' : mark(checks.find((c) => c.name === n)?.state ?? 'fail'))), time]);
    for (const c of never ? checks.slice(0, 1) : checks) if (c.state !== 'ok') notes.push(`  ${kernelLabel(r)} ${c.name}: ${c.state === 'fail' ? 'FAIL' : 'n/a'}: ${c.detail}`);
    if (r.retried) notes.push(`  ${kernelLabel(r)}: ${r.retried}`);
  }
  const verdict = results.every(kernelOk) ? 'all kernels pass' : `${results.filter((r) => !kernelOk(r)).length} of ${results.length} kernels FAIL`;
  return `${pad(rows)}\n${notes.length ? `\n${notes.join('\n')}\n` : ''}\n${verdict}\n`;
}

function hooksCell(r: KernelResult): string {
  const all = Object.entries(r.hooks);
  const on = all.filter(([, s]) => s.attached).length || r.programs_attached;
  const off = all.filter(([, s]) => !s.attached).map(([n, s]) => `${n}${s.reason ? ` (${s.reason})` : ''}`);
  return [on ? `${on} attached` : 'none attached', off.length ? `dropped: ${off.join(', ')}` : ''].filter(Boolean).join('; ');
}

/**
 * Markdown: the README's "Supported kernels" table, then one line per failed check. `stripPrefix` (the
 * checkout's path) is cut from the details so the README does not name one machine's folders.
 */
export function markdownTable(results: readonly KernelResult[], stripPrefix?: string): string {
  const esc = (s: string): string => (stripPrefix ? s.split(`${stripPrefix}/`).join('') : s).replace(/\|/g, '\\|');
  const lines = [
    '| kernel | KVM | strategy | hooks | copies observed / derived | result |',
    '|---|---|---|---|---|---|',
  ];
  const notes: string[] = [];
  for (const r of results) {
    const kvm = r.kvm.kvm === 'module' ? `module (${r.kvm.vendor ?? '?'}${r.kvm.module_btf ? ', module BTF' : ''})` : r.kvm.kvm;
    const failed = checksOf(r).filter((c) => c.state === 'fail');
    for (const c of failed) notes.push(`- ${esc(kernelLabel(r))}, ${c.name}: ${esc(c.detail)}`);
    const result = failed.length === 0 ? 'pass' : `FAIL: ${failed.map((c) => c.name).join(', ')}`;
    lines.push(
      `| ${esc(kernelLabel(r))} | ${esc(kvm)} | ${esc(r.strategy)} | ${esc(hooksCell(r))} | ${r.observed_copies} / ${r.derived_copies} | ${esc(result)} |`,
    );
  }
  return `${lines.join('\n')}\n${notes.length ? `\n${notes.join('\n')}\n` : ''}`;
}
