/**
 * The report as plain text for a terminal: capture facts, a per-ioctl table (counts, buffer flags,
 * latency percentiles), the worst buffers with addresses and thread, per-vCPU kvm_run addresses, exits and
 * lines touched, and the capture's health (lost records, leaked fds). Counts are printed as plain integers.
 */
import type { ReportModel } from './model-types.js';
import { exitPathText } from './exit-path-section.js';
import { copySourcesText, hooksText } from './buffers-section.js';

/** "812ns", "8.1µs", "3.20ms", "1.50s". */
export function fmtNs(ns: number): string {
  if (ns < 1_000) return `${Math.round(ns)}ns`;
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(ns < 10_000 ? 1 : 0)}µs`;
  if (ns < 1_000_000_000) return `${(ns / 1_000_000).toFixed(2)}ms`;
  return `${(ns / 1_000_000_000).toFixed(2)}s`;
}

const pad = (s: string | number, n: number): string => String(s).padStart(n);
const padR = (s: string | number, n: number): string => String(s).padEnd(n);

export interface TextOptions {
  /** Worst buffers listed per ioctl (default: every one the model kept). */
  worstPerIoctl?: number;
}

export function renderText(m: ReportModel, opts: TextOptions = {}): string {
  const out: string[] = [];
  const w = (s = '') => out.push(s);
  w(`kvm-trace report: ${m.source.file}`);
  w(`  records ${m.source.records} (lines ${m.source.lines}, unknown types ${m.source.ignored})` +
    (m.capture.strategy ? `   strategy ${m.capture.strategy}` : '') +
    (m.capture.duration_s !== null ? `   duration ${m.capture.duration_s.toFixed(2)}s` : '') +
    `   lost ${m.lost}   KVM_RUN exits ${m.totals.exits}`);
  w(`  cache line ${m.line_size} B   buffer flags: ${m.flags_from}   copies ${m.totals.copies} (${m.totals.bytes_copied} bytes)` +
    `   misaligned ${m.totals.misaligned}   crossing ${m.totals.cacheline_cross}   unknown-length ${m.totals.unknown_copies}   observed ${m.totals.observed_copies}   derived ${m.totals.derived_copies}`);
  w();

  const nameW = Math.max(24, ...m.ioctls.map((i) => i.name.length + 2));
  w(`${padR('ioctl', nameW)}${pad('calls', 9)}${pad('errors', 8)}${pad('copies', 8)}${pad('bytes', 10)}${pad('misaligned', 11)}${pad('crossing', 9)}${pad('unknown', 8)}${pad('p50', 9)}${pad('p90', 9)}${pad('p99', 9)}${pad('max', 9)}`);
  for (const i of m.ioctls) {
    w(`${padR(i.name, nameW)}${pad(i.calls, 9)}${pad(i.errors, 8)}${pad(i.copies, 8)}${pad(i.bytes_copied, 10)}${pad(i.misaligned, 11)}${pad(i.cacheline_cross, 9)}${pad(i.unknown_copies, 8)}` +
      `${pad(fmtNs(i.latency.p50_ns), 9)}${pad(fmtNs(i.latency.p90_ns), 9)}${pad(fmtNs(i.latency.p99_ns), 9)}${pad(fmtNs(i.latency.max_ns), 9)}`);
  }
  const t = m.totals;
  w(`${padR('total', nameW)}${pad(t.calls, 9)}${pad(t.errors, 8)}${pad(t.copies, 8)}${pad(t.bytes_copied, 10)}${pad(t.misaligned, 11)}${pad(t.cacheline_cross, 9)}${pad(t.unknown_copies, 8)}`);
  const errs = m.ioctls.filter((i) => i.errors > 0);
  if (errs.length) {
    w();
    w('errors:');
    for (const i of errs) w(`  ${i.name}: ${Object.entries(i.errnos).map(([e, n]) => `${e} ×${n}`).join(', ')}`);
  }

  const sources = [...hooksText(m.hooks), ...copySourcesText(m.ioctls.map((i) => ({ name: i.name, observed: i.observed_copies, derived: i.derived_copies, unknown: i.unknown_copies })))];
  if (sources.length) {
    w();
    for (const l of sources) w(l);
  }

  const worst = m.ioctls.flatMap((i) => i.worst.slice(0, opts.worstPerIoctl).map((f) => ({ name: i.name, f })));
  if (worst.length) {
    w();
    w('worst buffers (per ioctl, most extra cache lines first):');
    for (const { name, f } of worst) {
      const what = [f.misaligned ? `misaligned (align ${f.align})` : '', f.cacheline_cross ? `crosses: ${f.lines} lines for ${f.min_lines}` : ''].filter(Boolean).join(', ');
      w(`  ${padR(name, nameW)}${padR(f.dir, 10)}${padR(f.what, 28)} ${f.addr} len ${f.len}  ${what}  [${f.source}${f.hook ? ` by ${f.hook}` : f.via ? `, ${f.via}` : ''}]  pid ${f.pid} tid ${f.tid} ${f.comm}`);
    }
  }

  if (m.vcpus.length) {
    w();
    w('vCPUs:');
    for (const v of m.vcpus) {
      w(`  pid ${v.pid} vcpu ${v.vcpu}: kvm_run kernel ${v.kernel_addr ?? '?'}  user ${v.user_addr ?? '?'}  mmap ${v.mmap_size ?? '?'}  KVM_RUN calls ${v.runs}`);
      const ex = Object.entries(v.exits);
      if (ex.length) w(`    exits: ${ex.map(([r, n]) => `${r} ${n}`).join(', ')}`);
      for (const [r, l] of Object.entries(v.lines)) {
        w(`    ${padR(r, 16)} lines ${l.lines.join(',')}` + (l.straddling.length ? `   straddling: ${l.straddling.join(', ')}` : '') +
          (l.user_lines.length ? `   user ${l.user_lines.join(',')}` : '') + (l.kernel_lines.length ? `   kernel ${l.kernel_lines.join(',')}` : ''));
      }
    }
  }

  const path = exitPathText(m);
  if (path.length) {
    w();
    for (const l of path) w(l);
  }

  if (m.kvm_run) {
    const k = m.kvm_run;
    w();
    w(`struct kvm_run: ${k.size} bytes, ${k.rows} lines of ${k.line_size} B; fields each exit reason fills (kernel) and reads (VMM):`);
    for (const [r, x] of Object.entries(k.reasons)) {
      const st = x.fields.filter((f) => f.straddles).map((f) => f.name);
      w(`  ${padR(r, 16)} ${padR(x.member ?? '(header only)', 14)} lines ${x.lines.join(',')}` + (st.length ? `   straddling: ${st.join(', ')}` : ''));
    }
  }

  w();
  w(`capture health: lost records ${m.lost}   fds opened ${m.fds.opened}  closed ${m.fds.closed}  leaked ${m.fds.leaked}` +
    (m.capture.unknown_ioctls !== null ? `   unknown ioctls ${m.capture.unknown_ioctls}` : ''));
  for (const l of m.fds.leaked_list) w(`  leaked: pid ${l.pid} fd ${l.fd} (${l.fd_kind})`);
  for (const n of m.notes) w(`note: ${n}`);
  return `${out.join('\n')}\n`;
}
