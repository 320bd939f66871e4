/**
 * The matrix as text (kernel × check, then one line per failed check with its detail) and as the README's
 * "Supported kernels" Markdown table (kernel, KVM built in / module, strategy, hooks attached, observed vs
 * derived copies, result), each followed by notes: failed checks, which ioctls had their copy rules checked
 * against observed copies and which could not be.
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

/**
 * Which of the demo's ioctls had their copies checked against observed copies, and which could not be
 * (their copies go through routines no attached hook sees), one line each.
 */
export function coverageLines(r: KernelResult): string[] {
  const c = r.rule_coverage;
  if (!c) return [];
  const hooks = r.rule_hooks?.length ? r.rule_hooks.join(', ') : 'no copy hook';
  const via = (names: string[]): string => [...new Set(names.flatMap((n) => r.rule_by_ioctl?.[n]?.unobservable_via ?? []))].join(', ');
  const out: string[] = [];
  if (c.checked.length) out.push(`copy rules checked against copies observed by ${hooks}: ${c.checked.join(', ')}`);
  if (c.partly.length) out.push(`partly checked (not their copies through ${via(c.partly)}): ${c.partly.join(', ')}`);
  const un = Object.keys(c.unobservable);
  if (un.length) out.push(`not observable (their copies go through ${via(un)}, which no attached hook sees): ${un.join(', ')}`);
  if (c.nothing.length) out.push(`copy nothing: ${c.nothing.join(', ')}`);
  const refused = (r.rule_extra_calls ?? []).filter((l) => !l.endsWith(' ok'));
  if (refused.length) out.push(`extra ioctls (beyond the guest's) that failed here, not compared: ${refused.join('; ')}`);
  return out;
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
    if (r.package_note) notes.push(`  ${kernelLabel(r)}: ${r.package_note}`);
    for (const l of coverageLines(r)) notes.push(`  ${kernelLabel(r)} ${l}`);
  }
  const verdict = results.every(kernelOk) ? 'all kernels pass' : `${results.filter((r) => !kernelOk(r)).length} of ${results.length} kernels FAIL`;
  return `${pad(rows)}\n${notes.length ? `\n${notes.join('\n')}\n` : ''}\n${verdict}\n`;
}

/** "memdup_user, vmemdup_user (fentry)": hooks with the same reason named together. */
function byReason(hooks: Array<[string, { reason?: string }]>): string {
  const groups = new Map<string, string[]>();
  for (const [n, h] of hooks) groups.set(h.reason ?? '', [...(groups.get(h.reason ?? '') ?? []), n]);
  return [...groups].map(([why, names]) => `${names.join(', ')}${why ? ` (${why})` : ''}`).join(', ');
}

function hooksCell(r: KernelResult): string {
  const all = Object.entries(r.hooks);
  if (!all.length) return r.programs_attached ? `${r.programs_attached} programs attached` : 'none attached';
  const on = all.filter(([, s]) => s.attached);
  const off = all.filter(([, s]) => !s.attached);
  if (!on.length) return `no copy hook attached: ${byReason(off)}`;
  return [`attached: ${byReason(on)}`, off.length ? `not attached: ${byReason(off)}` : ''].filter(Boolean).join('; ');
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
    if (r.package_note) notes.push(`- ${esc(kernelLabel(r))}: ${esc(r.package_note)}`);
    for (const l of coverageLines(r)) notes.push(`- ${esc(kernelLabel(r))}: ${esc(l)}`);
  }
  return `${lines.join('\n')}\n${notes.length ? `\n${notes.join('\n')}\n` : ''}`;
}
