/**
 * The results table `npm run bench` prints: per workload the untraced loop time and one row per tracer
 * (ratio with its 95 % interval, tracer CPU per record, attach/detach time, peak RSS, lost records,
 * records/s), the idle attach/detach of each kvm-trace mode, what could not run and why, the throughput
 * rows, and the targets with pass / MISS / ?? (inconclusive) / n/a.
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
      `ratio = workload loop time traced / untraced in the same round: geometric mean (95 % interval); ` +
      `cpu/rec = tracer CPU minus its idle attach/detach, per record written`,
  );
  const busy = (x: number | null): string => (x === null ? '?' : x.toFixed(2));
  out.push(
    `host: ${j.host.cores} cores, kernel ${j.host.kernel}, load ${j.host.loadavg_start.join(' ')} → ${j.host.loadavg_end.join(' ')}, ` +
      `busy cores ${busy(j.host.busy_cores_start)} → ${busy(j.host.busy_cores_end)}`,
  );
  for (const [id, i] of Object.entries(j.idle)) {
    out.push(`idle ${id}: cpu ${secs(i.cpu_total_s, 3)}, attach ${secs(i.attach_s)}, detach ${secs(i.detach_s)}, RSS ${i.rss_mb ?? '?'} MB (${i.samples} runs)`);
  }
  for (const w of j.workloads) {
    out.push('');
    const u = w.untraced_s;
    out.push(
      `${w.label}: untraced ${u ? `${u.median.toFixed(3)} s (${u.min.toFixed(3)}–${u.max.toFixed(3)})` : 'n/a'}` +
        `${w.exits_per_s ? `, ${si(w.exits_per_s)} exits/s, ${((1e6 / w.exits_per_s) || 0).toFixed(1)} µs/exit` : ''}`,
    );
    for (const e of w.errors) out.push(`  untraced failed, ${e}`);
    if (Object.keys(w.tracers).length === 0) continue;
    out.push(
      `  ${pad('tracer', 52)} ${pad('ratio (95 % interval)', 22)} ${pad('cpu/rec (95 %)', 22)} ${pad('attach', 8)} ${pad('detach', 8)} ${pad('RSS', 8)} ${pad('lost', 6)} records/s`,
    );
    for (const [, t] of Object.entries(w.tracers)) {
      if (!t) continue;
      const range = t.ratio_ci ? ` (${t.ratio_ci[0].toFixed(2)}–${t.ratio_ci[1].toFixed(2)})` : '';
      const cpu = t.cpu_us_per_record != null
        ? `${t.cpu_us_per_record.toFixed(2)} µs${t.cpu_us_per_record_ci ? ` (${t.cpu_us_per_record_ci[0].toFixed(2)}–${t.cpu_us_per_record_ci[1].toFixed(2)})` : ''}`
        : '—';
      out.push(
        `  ${pad(t.label, 52)} ${pad(t.ratio !== null ? `${fmtRatio(t.ratio)}${range}` : 'failed', 22)} ${pad(cpu, 22)} ` +
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
      `${j.decoder.with_json_records_per_s !== null ? ` (${rate(j.decoder.with_json_records_per_s)} with JSON` +
        `${j.decoder.record_path_cpu_us !== null ? `, ${j.decoder.record_path_cpu_us.toFixed(2)} µs CPU per record` : ''})` : ''} — ${j.decoder.note}`,
  );
  out.push('');
  out.push(`targets (on ${j.workload ?? 'no workload'}):`);
  for (const t of j.targets) {
    const verdict = t.pass === null ? `n/a — ${t.reason}` : t.pass ? 'pass' : t.verdict === 'inconclusive' ? '?? (interval straddles the target)' : 'MISS';
    out.push(`  ${pad(t.name, 22)} ${pad(t.target, 44)} ${pad(t.value, 56)} ${verdict}`);
  }
  for (const n of j.notes) out.push(`note: ${n}`);
  if (j.aborted) out.push('note: interrupted — partial results');
  return out.join('\n');
}
