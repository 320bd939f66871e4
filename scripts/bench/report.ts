/**
 * Turns the raw samples of a run into the results: per workload and tracer the slowdown ratio against the
 * untraced run of the same round (median, min–max), attach/detach time, tracer peak RSS, lost records and
 * records/s; the headline object `npm run bench -- --json` prints; and the targets of issue 6, each marked
 * pass / miss (or n/a when it could not be measured, with the reason).
 */
import { cpus, release } from 'node:os';
import { hotFunctions, type HotFunction } from './cpu-profile.js';
import type { BenchRun } from './runner.js';
import { tracersFor } from './runner.js';
import type { Sample } from './run-sample.js';
import { maxOf, round, spread, type Spread } from './stats.js';
import type { TracerId } from './tracers.js';
import type { Workload, WorkloadId } from './workloads.js';

export interface TracerResult {
  label: string;
  ratio: number | null;
  ratio_range: [number, number] | null;
  traced_s: number | null;
  attach_s: number | null;
  detach_s: number | null;
  rss_mb: number | null;
  cpu_s: number | null;
  lost?: number | null;
  events?: number | null;
  kvm_run_records?: number | null;
  /** Exits the workload made with no KVM_RUN record in the capture (max over rounds): silent loss. */
  missing_runs?: number | null;
  records_per_s?: number | null;
  samples: number;
  errors: string[];
  reason?: string;
  /** --cpu-prof: the tracer's hottest functions (self time) in its first profiled run. */
  profile?: { file: string; top: HotFunction[] };
}

export interface WorkloadResult {
  id: WorkloadId;
  label: string;
  exits: number | null;
  untraced_s: Spread | null;
  exits_per_s: number | null;
  tracers: Partial<Record<TracerId, TracerResult>>;
  errors: string[];
}

export interface Target {
  name: string;
  target: string;
  /** The measured value ("1.07×, 0 lost"), or "n/a". */
  value: string;
  /** null: not measured (see reason). */
  pass: boolean | null;
  reason?: string;
}

/** Peer ids as JSON keys. */
const PEER_KEY: Partial<Record<TracerId, string>> = {
  strace: 'strace',
  'perf-trace': 'perf_trace',
  bpftrace: 'bpftrace',
  'bpftrace-count': 'bpftrace_count',
};

function ratioPerRound(untraced: Sample[], traced: Sample[]): number[] {
  const out: number[] = [];
  for (const s of traced) {
    const u = untraced.find((x) => x.round === s.round && x.elapsed_s !== null);
    if (u?.elapsed_s && s.elapsed_s !== null) out.push(s.elapsed_s / u.elapsed_s);
  }
  return out;
}

function tracerResult(label: string, untraced: Sample[], samples: Sample[]): TracerResult {
  const ok = samples.filter((s) => !s.error);
  const ratios = spread(ratioPerRound(untraced, ok));
  const r: TracerResult = {
    label,
    ratio: round(ratios?.median, 3),
    ratio_range: ratios ? [round(ratios.min, 3)!, round(ratios.max, 3)!] : null,
    traced_s: round(spread(ok.map((s) => s.elapsed_s))?.median, 4),
    attach_s: round(spread(ok.map((s) => s.attach_s))?.median, 3),
    detach_s: round(spread(ok.map((s) => s.detach_s))?.median, 3),
    rss_mb: round(maxOf(ok.map((s) => s.rss_mb)), 1),
    cpu_s: round(spread(ok.map((s) => s.cpu_s))?.median, 2),
    samples: ok.length,
    errors: samples.filter((s) => s.error).map((s) => `round ${s.round}: ${s.error}`),
  };
  if (ok.some((s) => s.events !== undefined)) {
    r.lost = maxOf(ok.map((s) => s.lost));
    r.events = spread(ok.map((s) => s.events))?.median ?? null;
    r.kvm_run_records = spread(ok.map((s) => s.kvm_run_records))?.median ?? null;
    r.missing_runs = maxOf(ok.map((s) => (s.kvm_run_records != null && s.exits != null ? Math.max(0, s.exits - s.kvm_run_records) : null)));
    r.records_per_s = round(spread(ok.map((s) => (s.events != null && s.elapsed_s ? s.events / s.elapsed_s : null)))?.median, 0);
  }
  if (ratios === null) r.reason = r.errors[0] ?? 'no untraced run to compare with';
  const prof = ok.find((s) => s.profile)?.profile;
  if (prof) r.profile = { file: prof, top: hotFunctions(prof) };
  return r;
}

function workloadResult(run: BenchRun, w: Workload): WorkloadResult {
  const mine = run.samples.filter((s) => s.workload === w.id);
  const untraced = mine.filter((s) => s.tracer === 'untraced' && !s.error);
  const u = spread(untraced.map((s) => s.elapsed_s));
  const exits = spread(untraced.map((s) => s.exits))?.median ?? null;
  const tracers: WorkloadResult['tracers'] = {};
  for (const t of tracersFor(w, run.tracers)) {
    if (t.id === 'untraced') continue;
    tracers[t.id] = tracerResult(t.label, untraced, mine.filter((s) => s.tracer === t.id));
  }
  return {
    id: w.id,
    label: w.label,
    exits,
    untraced_s: u && { median: round(u.median, 4)!, min: round(u.min, 4)!, max: round(u.max, 4)!, n: u.n },
    exits_per_s: u && exits ? Math.round(exits / u.median) : null,
    tracers,
    errors: mine.filter((s) => s.tracer === 'untraced' && s.error).map((s) => `round ${s.round}: ${s.error}`),
  };
}

/** The workload the headline numbers come from: the reference guest's 1-vCPU PIO loop, else the C one. */
function primary(results: WorkloadResult[]): WorkloadResult | undefined {
  return results.find((r) => r.id === 'guest-pio-1') ?? results.find((r) => r.id === 'c-pio-1') ?? results[0];
}

type Headline = TracerResult | { ratio: null; reason: string };

function headline(run: BenchRun, p: WorkloadResult | undefined, id: TracerId): Headline {
  const t = run.tracers.find((x) => x.id === id);
  if (!t) return { ratio: null, reason: 'not selected (--tracers / --no-peers / --smoke)' };
  if (t.unavailable) return { ratio: null, reason: t.unavailable };
  if (!p) return { ratio: null, reason: 'no workload ran' };
  const r = p.tracers[id];
  if (!r) return { ratio: null, reason: `not run on ${p.label}` };
  return r;
}

export function fmtRatio(x: number | null | undefined): string {
  return typeof x === 'number' ? `${x.toFixed(2)}×` : 'n/a';
}

function target(name: string, goal: string, value: string | null, pass: boolean | null, reason: string): Target {
  return value === null ? { name, target: goal, value: 'n/a', pass: null, reason } : { name, target: goal, value, pass };
}

function targets(kt: Headline, agg: Headline, top: Headline, run: BenchRun): Target[] {
  const full = 'samples' in kt && kt.ratio !== null ? kt : null;
  const ag = 'samples' in agg && agg.ratio !== null ? agg : null;
  const tp = 'samples' in top && top.ratio !== null ? top : null;
  const why = (h: Headline): string => h.reason ?? 'no data';
  const dec = run.decoder.records_per_s;
  const ours = run.samples.filter((s) => s.tracer.startsWith('kvm-trace') && !s.error);
  const attach = spread(ours.map((s) => s.attach_s));
  const rss = spread(ours.map((s) => s.rss_mb));
  return [
    target(
      'full capture',
      '≤ 1.10× untraced, 0 lost',
      full && `${fmtRatio(full.ratio)}, ${full.lost ?? '?'} lost${full.missing_runs ? `, ${full.missing_runs} runs missing` : ''}`,
      full && full.ratio !== null ? full.ratio <= 1.1 && full.lost === 0 && !full.missing_runs : null,
      why(kt),
    ),
    target('aggregate mode', '≤ 1.08× untraced', ag && fmtRatio(ag.ratio), ag && ag.ratio !== null ? ag.ratio <= 1.08 : null, why(agg)),
    target('top', '≤ 1.08× untraced (the aggregate, read every second)', tp && fmtRatio(tp.ratio), tp && tp.ratio !== null ? tp.ratio <= 1.08 : null, why(top)),
    target('decoder', '≥ 2 M records/s', dec !== null ? `${(dec / 1e6).toFixed(2)} M records/s` : null, dec !== null ? dec >= 2e6 : null, run.decoder.note),
    // Attach time and memory do not depend on the workload's kind: judged over every kvm-trace run (all
    // workloads, all modes) — the median attach time, and the worst peak RSS.
    target(
      'attach time',
      '≤ 0.5 s',
      attach && `${attach.median.toFixed(2)} s (median of ${attach.n}, max ${attach.max.toFixed(2)})`,
      attach ? attach.median <= 0.5 : null,
      why(kt),
    ),
    target('tracer RSS', '≤ 150 MB', rss && `${rss.max.toFixed(0)} MB (max of ${rss.n})`, rss ? rss.max <= 150 : null, why(kt)),
  ];
}

export interface BenchJson {
  rounds: number;
  exits: number;
  smoke: boolean;
  workload: string | null;
  untraced_s: number | null;
  untraced_s_range: [number, number] | null;
  exits_per_s: number | null;
  kvm_trace: Headline;
  kvm_trace_lean: Headline;
  kvm_trace_aggregate: Headline;
  kvm_trace_top: Headline;
  peers: Record<string, Headline>;
  /** records_per_s: decoding only; with_json_records_per_s: decoding plus JSON.stringify of each record. */
  decoder: { records_per_s: number | null; with_json_records_per_s: number | null; note: string };
  ringbuf: { records_per_s: number | null; note: string };
  targets: Target[];
  workloads: WorkloadResult[];
  skipped_workloads: BenchRun['skippedWorkloads'];
  notes: string[];
  host: { cores: number; kernel: string; loadavg_start: number[]; loadavg_end: number[] };
  aborted: boolean;
}

export function buildJson(run: BenchRun): BenchJson {
  const results = run.workloads.map((w) => workloadResult(run, w));
  const p = primary(results);
  const kt = headline(run, p, 'kvm-trace');
  const agg = headline(run, p, 'kvm-trace-aggregate');
  const top = headline(run, p, 'kvm-trace-top');
  const peers: BenchJson['peers'] = {};
  for (const [id, key] of Object.entries(PEER_KEY) as Array<[TracerId, string]>) {
    // A peer runs on the guest's and the C loop's 1-vCPU PIO: prefer the guest, as for kvm-trace.
    peers[key] = headline(run, p, id);
  }
  return {
    rounds: run.options.rounds,
    exits: run.options.exits,
    smoke: run.options.smoke,
    workload: p ? p.label : null,
    untraced_s: p?.untraced_s?.median ?? null,
    untraced_s_range: p?.untraced_s ? [p.untraced_s.min, p.untraced_s.max] : null,
    exits_per_s: p?.exits_per_s ?? null,
    kvm_trace: kt,
    kvm_trace_lean: headline(run, p, 'kvm-trace-lean'),
    kvm_trace_aggregate: agg,
    kvm_trace_top: top,
    peers,
    decoder: {
      records_per_s: round(run.decoder.records_per_s, 0),
      with_json_records_per_s: round(run.decoder.with_json_records_per_s, 0),
      note: run.decoder.note,
    },
    ringbuf: { records_per_s: round(run.ring.records_per_s, 0), note: run.ring.note },
    targets: targets(kt, agg, top, run),
    workloads: results,
    skipped_workloads: run.skippedWorkloads,
    notes: run.notes,
    host: {
      cores: cpus().length,
      kernel: release(),
      loadavg_start: run.loadavg.start.map((x) => round(x, 2)!),
      loadavg_end: run.loadavg.end.map((x) => round(x, 2)!),
    },
    aborted: run.aborted,
  };
}
