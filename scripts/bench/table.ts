/**
 * The results table `npm run bench` prints: per workload the untraced loop time and one row per tracer
 * (ratio with min–max, attach/detach time, peak RSS, lost records, records/s), what could not run and why,
 * the throughput rows, and the targets with pass / MISS / n/a.
 */
import type { BenchJson } from './report.js';
import { fmtRatio } from './report.js';
import type { BenchRun } from './runner.js';

function si(x: number | null | undefined): string {
  if (typeof x !== 'number') return 'n/a';
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} k`;
  return x.toFixed(0);
}

function secs(x: number | null | undefined, digits = 2): string {
  return typeof x === 'number' ? `${x.toFixed(digits)} s` : '—';
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

export function formatTable(j: BenchJson, run: BenchRun): string {
  const out: string[] = [];
  out.push(
    `kvm-trace bench — ${j.rounds} round${j.rounds > 1 ? 's' : ''} × ${j.exits} exits per run, interleaved; ` +
      `ratio = workload loop time traced / untraced in the same round: median (min–max)`,
  );
  out.push(`host: ${j.host.cores} cores, kernel ${j.host.kernel}, load ${j.host.loadavg_start.join(' ')} → ${j.host.loadavg_end.join(' ')}`);
  for (const w of j.workloads) {
    out.push('');
    const u = w.untraced_s;
    out.push(
      `${w.label}: untraced ${u ? `${u.median.toFixed(3)} s (${u.min.toFixed(3)}–${u.max.toFixed(3)})` : 'n/a'}` +
        `${w.exits_per_s ? `, ${si(w.exits_per_s)} exits/s, ${((1e6 / w.exits_per_s) || 0).toFixed(1)} µs/exit` : ''}`,
    );
    for (const e of w.errors) out.push(`  untraced failed, ${e}`);
    if (Object.keys(w.tracers).length === 0) continue;
    out.push(`  ${pad('tracer', 52)} ${pad('ratio (min–max)', 20)} ${pad('attach', 8)} ${pad('detach', 8)} ${pad('RSS', 8)} ${pad('lost', 6)} records/s`);
    for (const [, t] of Object.entries(w.tracers)) {
      if (!t) continue;
      const range = t.ratio_range ? ` (${t.ratio_range[0].toFixed(2)}–${t.ratio_range[1].toFixed(2)})` : '';
      out.push(
        `  ${pad(t.label, 52)} ${pad(t.ratio !== null ? `${fmtRatio(t.ratio)}${range}` : 'failed', 20)} ` +
          `${pad(secs(t.attach_s), 8)} ${pad(secs(t.detach_s), 8)} ${pad(t.rss_mb != null ? `${t.rss_mb.toFixed(0)} MB` : '—', 8)} ` +
          `${pad(t.lost != null ? String(t.lost) : '—', 6)} ${t.records_per_s != null ? si(t.records_per_s) : '—'}`,
      );
      for (const e of t.errors) out.push(`    error, ${e}`);
      if (t.profile) {
        out.push(`    cpu profile ${t.profile.file}, self time:`);
        for (const h of t.profile.top) out.push(`      ${h.self_pct.toFixed(1).padStart(5)} %  ${h.fn}  ${h.where}`);
      }
    }
  }
  const notRun = run.tracers.filter((t) => t.unavailable);
  if (notRun.length || j.skipped_workloads.length) out.push('');
  for (const t of notRun) out.push(`not run: ${t.label} — ${t.unavailable}`);
  for (const s of j.skipped_workloads) out.push(`not run: ${s.label} — ${s.reason}`);
  out.push('');
  const rate = (x: number | null): string => (x !== null ? `${si(x)} records/s` : 'n/a');
  out.push(`ring-buffer drain: ${rate(j.ringbuf.records_per_s)} — ${j.ringbuf.note}`);
  out.push(
    `decoder:           ${rate(j.decoder.records_per_s)}` +
      `${j.decoder.with_json_records_per_s !== null ? ` (${rate(j.decoder.with_json_records_per_s)} with JSON.stringify)` : ''} — ${j.decoder.note}`,
  );
  out.push('');
  out.push(`targets (on ${j.workload ?? 'no workload'}):`);
  for (const t of j.targets) {
    const verdict = t.pass === null ? `n/a — ${t.reason}` : t.pass ? 'pass' : 'MISS';
    out.push(`  ${pad(t.name, 16)} ${pad(t.target, 26)} ${pad(t.value, 34)} ${verdict}`);
  }
  for (const n of j.notes) out.push(`note: ${n}`);
  if (j.aborted) out.push('note: interrupted — partial results');
  return out.join('\n');
}
