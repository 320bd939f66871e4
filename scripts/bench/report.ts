/**
 * Turns the raw samples of a run into the results: per workload and tracer the slowdown ratio against the
 * untraced run of the same round (geometric mean with its 95 % interval, min–max), the tracer's CPU per
 * record (its whole-life CPU minus the idle attach/detach of the same mode, over the records it wrote),
 * attach/detach time, peak RSS, lost records and records/s; the headline object `npm run bench -- --json`
 * prints; and the targets of issue 13, each judged on its interval: pass only when the whole interval meets
 * it, fail when none of it does, inconclusive between (pass false), n/a with a reason when not measured.
 */
import { cpus, release } from 'node:os';
import { hotFunctions, type HotFunction } from './cpu-profile.js';
import type { BenchRun } from './runner.js';
import { tracersFor } from './runner.js';
import type { Sample } from './run-sample.js';
import { atMost, maxOf, meanCi, ratioCi, round, spread, type Estimate, type Spread, type Verdict } from './stats.js';
import type { TracerId } from './tracers.js';
import type { Workload, WorkloadId } from './workloads.js';

export interface TracerResult {
  label: string;
  /** Geometric mean of the per-round ratios traced / untraced, its 95 % interval, and min–max. */
  ratio: number | null;
  ratio_ci: [number, number] | null;
  ratio_range: [number, number] | null;
  traced_s: number | null;
  /** Medians: start → ready; SIGINT → summary on stdout (kvm-trace) or exit; SIGINT → exit. */
  attach_s: number | null;
  detach_s: number | null;
  exit_s?: number | null;
  rss_mb: number | null;
  /** Median CPU seconds until told to stop, and over the whole life (attach … exit). */
  cpu_s: number | null;
  cpu_total_s?: number | null;
  /** The same mode's idle attach/detach/exit CPU (median), subtracted below. */
  idle_cpu_s?: number | null;
  /** (cpu_total_s − idle_cpu_s) / records written, in µs: mean over rounds and its 95 % interval. */
  cpu_us_per_record?: number | null;
  cpu_us_per_record_ci?: [number, number] | null;
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
  /** The measured value with its interval ("1.07× (1.02–1.12)"), or "n/a". */
  value: string;
  /** true only when the whole interval meets the target; null: not measured (see reason). */
  pass: boolean | null;
  /** pass / fail / inconclusive (the interval straddles the target); absent when not measured. */
  verdict?: Verdict;
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

const ci = (e: Estimate | null, digits: number): [number, number] | null => (e ? [round(e.lo, digits)!, round(e.hi, digits)!] : null);

function tracerResult(label: string, untraced: Sample[], samples: Sample[], idle: Sample[]): TracerResult {
  const ok = samples.filter((s) => !s.error);
  const perRound = ratioPerRound(untraced, ok);
  const ratios = spread(perRound);
  const ratio = ratioCi(perRound);
  const idleCpu = spread(idle.filter((s) => !s.error).map((s) => s.cpu_total_s))?.median ?? null;
  const r: TracerResult = {
    label,
    ratio: round(ratio?.value, 3),
    ratio_ci: ci(ratio, 3),
    ratio_range: ratios ? [round(ratios.min, 3)!, round(ratios.max, 3)!] : null,
    traced_s: round(spread(ok.map((s) => s.elapsed_s))?.median, 4),
    attach_s: round(spread(ok.map((s) => s.attach_s))?.median, 3),
    detach_s: round(spread(ok.map((s) => s.detach_s))?.median, 3),
    exit_s: round(spread(ok.map((s) => s.exit_s))?.median, 3),
    rss_mb: round(maxOf(ok.map((s) => s.rss_mb)), 1),
    cpu_s: round(spread(ok.map((s) => s.cpu_s))?.median, 2),
    cpu_total_s: round(spread(ok.map((s) => s.cpu_total_s))?.median, 3),
    samples: ok.length,
    errors: samples.filter((s) => s.error).map((s) => `round ${s.round}: ${s.error}`),
  };
  if (ok.some((s) => s.events !== undefined)) {
    r.lost = maxOf(ok.map((s) => s.lost));
    r.events = spread(ok.map((s) => s.events))?.median ?? null;
    r.kvm_run_records = spread(ok.map((s) => s.kvm_run_records))?.median ?? null;
    r.missing_runs = maxOf(ok.map((s) => (s.kvm_run_records != null && s.exits != null ? Math.max(0, s.exits - s.kvm_run_records) : null)));
    r.records_per_s = round(spread(ok.map((s) => (s.events != null && s.elapsed_s ? s.events / s.elapsed_s : null)))?.median, 0);
    r.idle_cpu_s = round(idleCpu, 3);
    const perRecord = meanCi(ok.map((s) => (s.cpu_total_s != null && idleCpu !== null && s.events ? ((s.cpu_total_s - idleCpu) / s.events) * 1e6 : null)));
    r.cpu_us_per_record = round(perRecord?.value, 3);
    r.cpu_us_per_record_ci = ci(perRecord, 3);
  }
  if (ratios === null) r.reason = r.errors[0] ?? 'no untraced run to compare with';
  const prof = ok.find((s) => s.profile)?.profile;
  if (prof) r.profile = { file: prof, top: hotFunctions(prof) };
  return r;
}

function workloadResult(run: BenchRun, w: Workload): WorkloadResult {
  const mine = run.samples.filter((s) => s.workload === w.id && !s.idle);
  const untraced = mine.filter((s) => s.tracer === 'untraced' && !s.error);
  const u = spread(untraced.map((s) => s.elapsed_s));
  const exits = spread(untraced.map((s) => s.exits))?.median ?? null;
  const tracers: WorkloadResult['tracers'] = {};
  for (const t of tracersFor(w, run.tracers)) {
    if (t.id === 'untraced') continue;
    const idle = run.samples.filter((s) => s.idle && s.tracer === t.id);
    tracers[t.id] = tracerResult(t.label, untraced, mine.filter((s) => s.tracer === t.id), idle);
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

function notMeasured(name: string, goal: string, reason: string): Target {
  return { name, target: goal, value: 'n/a', pass: null, reason };
}

function judged(name: string, goal: string, value: string, verdict: Verdict): Target {
  return { name, target: goal, value, pass: verdict === 'pass', verdict };
}

/** Several verdicts as one: any fail fails, all pass passes, else inconclusive. */
function allOf(verdicts: Verdict[]): Verdict {
  if (verdicts.includes('fail')) return 'fail';
  return verdicts.every((v) => v === 'pass') ? 'pass' : 'inconclusive';
}

const fmtCi = (v: number | null | undefined, c: [number, number] | null | undefined, unit: string, digits = 2): string =>
  typeof v === 'number' ? `${v.toFixed(digits)}${unit}${c ? ` (${c[0].toFixed(digits)}–${c[1].toFixed(digits)})` : ''}` : 'n/a';

const est = (value: number, c: [number, number] | null): Estimate => ({ value, lo: c ? c[0] : value, hi: c ? c[1] : value, n: 0 });

/** One tracer's figure on every workload it ran on, judged against `bound`. */
function perWorkload(
  name: string,
  goal: string,
  results: WorkloadResult[],
  id: TracerId,
  pick: (t: TracerResult) => { v: number | null | undefined; c: [number, number] | null | undefined },
  bound: number,
  unit: string,
  extra: (t: TracerResult) => Verdict = () => 'pass',
): Target {
  const rows = results.flatMap((w) => {
    const t = w.tracers[id];
    const p = t && pick(t);
    return t && p && typeof p.v === 'number' ? [{ w, t, v: p.v, c: p.c ?? null }] : [];
  });
  if (rows.length === 0) {
    const why = results.map((w) => w.tracers[id]?.reason).find(Boolean);
    return notMeasured(name, goal, why ?? `${id} did not run`);
  }
  const verdicts = rows.map((r) => allOf([atMost(est(r.v, r.c), bound), extra(r.t)]));
  const worst = rows.reduce((a, b) => ((b.c?.[1] ?? b.v) > (a.c?.[1] ?? a.v) ? b : a));
  const value = `${fmtCi(worst.v, worst.c, unit)} on ${worst.w.label}` + (rows.length > 1 ? ` (worst of ${rows.length} workloads)` : '');
  return judged(name, goal, value, allOf(verdicts));
}

/** The aggregate mode against bpftrace's in-kernel count, per round on the workloads both ran: agg / bpftrace ≤ 1. */
function aggregateVsBpftrace(run: BenchRun): Target {
  const name = 'aggregate vs bpftrace';
  const goal = "never above bpftrace's in-kernel count";
  const paired: number[] = [];
  for (const s of run.samples) {
    if (s.tracer !== 'kvm-trace-aggregate' || s.idle || s.error || !s.elapsed_s) continue;
    const b = run.samples.find((x) => x.tracer === 'bpftrace-count' && x.workload === s.workload && x.round === s.round && !x.error && x.elapsed_s);
    if (b?.elapsed_s) paired.push(s.elapsed_s / b.elapsed_s);
  }
  const e = ratioCi(paired);
  if (!e) return notMeasured(name, goal, 'bpftrace-count and the aggregate mode did not run in the same rounds (--with-peers)');
  return judged(name, goal, `aggregate / bpftrace count ${fmtCi(e.value, [e.lo, e.hi], '×', 3)} over ${e.n} rounds`, atMost(e, 1));
}

function targets(results: WorkloadResult[], run: BenchRun): Target[] {
  const dec = run.decoder.records_per_s;
  // `attach` in its modes (they print a summary on stop): what the attach and detach goals are about.
  const attachModes = new Set(run.tracers.filter((t) => !t.peer && t.style === 'attach' && t.hasSummary).map((t) => t.id));
  const ours = run.samples.filter((s) => attachModes.has(s.tracer) && !s.error);
  const full = ours.filter((s) => s.tracer === 'kvm-trace' && !s.idle);
  const attach = meanCi(ours.map((s) => s.attach_s));
  const detach = meanCi(ours.map((s) => s.detach_s));
  const rss = maxOf(full.map((s) => s.rss_mb));
  const noLoss = (t: TracerResult): Verdict => (t.lost === 0 && !t.missing_runs ? 'pass' : 'fail');
  const timed = (name: string, goal: string, e: Estimate | null, bound: number): Target =>
    e ? judged(name, goal, `${fmtCi(e.value, [e.lo, e.hi], ' s')} over ${e.n} runs`, atMost(e, bound)) : notMeasured(name, goal, 'kvm-trace did not run');
  return [
    perWorkload('cpu per record', '≤ 1 µs (full capture to JSONL)', results, 'kvm-trace', (t) => ({ v: t.cpu_us_per_record, c: t.cpu_us_per_record_ci }), 1, ' µs'),
    perWorkload('full capture', '≤ 1.10× untraced on every workload, 0 lost', results, 'kvm-trace', (t) => ({ v: t.ratio, c: t.ratio_ci }), 1.1, '×', noLoss),
    // The same two for `attach -w`: every record kept, decoded later — the cheap way to capture everything.
    perWorkload('cpu per record (-w)', '≤ 1 µs (binary capture, decoded later)', results, 'kvm-trace-binary', (t) => ({ v: t.cpu_us_per_record, c: t.cpu_us_per_record_ci }), 1, ' µs'),
    perWorkload('full capture (-w)', '≤ 1.10× untraced on every workload, 0 lost', results, 'kvm-trace-binary', (t) => ({ v: t.ratio, c: t.ratio_ci }), 1.1, '×', noLoss),
    perWorkload('aggregate mode', '≤ 1.05× untraced on every workload', results, 'kvm-trace-aggregate', (t) => ({ v: t.ratio, c: t.ratio_ci }), 1.05, '×'),
    aggregateVsBpftrace(run),
    // Issue 11: top is for production, so its target is the issue's 1.05×, like the aggregate mode it reads.
    perWorkload('top', '≤ 1.05× untraced on every workload (the aggregate, read every second)', results, 'kvm-trace-top', (t) => ({ v: t.ratio, c: t.ratio_ci }), 1.05, '×'),
    dec !== null
      ? judged('decoder', '≥ 2 M records/s', `${(dec / 1e6).toFixed(2)} M records/s`, dec >= 2e6 ? 'pass' : 'fail')
      : notMeasured('decoder', '≥ 2 M records/s', run.decoder.note),
    // Attach and detach do not depend on the workload: judged over every attach run (all modes), idle ones included.
    timed('attach time', '≤ 0.25 s', attach, 0.25),
    timed('detach time', '≤ 0.1 s (SIGINT → summary)', detach, 0.1),
    rss !== null
      ? judged('tracer RSS', '≤ 100 MB peak (full capture)', `${rss.toFixed(0)} MB (max of ${full.length})`, rss <= 100 ? 'pass' : 'fail')
      : notMeasured('tracer RSS', '≤ 100 MB peak (full capture)', 'kvm-trace did not run'),
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
  kvm_trace_binary: Headline;
  kvm_trace_aggregate: Headline;
  kvm_trace_top: Headline;
  peers: Record<string, Headline>;
  /** records_per_s: decoding only; with_json_records_per_s and record_path_cpu_us: attach -o's whole record path. */
  decoder: { records_per_s: number | null; with_json_records_per_s: number | null; record_path_cpu_us: number | null; note: string };
  ringbuf: { records_per_s: number | null; note: string };
  targets: Target[];
  workloads: WorkloadResult[];
  skipped_workloads: BenchRun['skippedWorkloads'];
  notes: string[];
  host: { cores: number; kernel: string; loadavg_start: number[]; loadavg_end: number[]; busy_cores_start: number | null; busy_cores_end: number | null };
  /** Per kvm-trace mode, its idle attach/detach (medians): what a run costs before its first record. */
  idle: Record<string, { cpu_total_s: number | null; attach_s: number | null; detach_s: number | null; rss_mb: number | null; samples: number }>;
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
    kvm_trace_binary: headline(run, p, 'kvm-trace-binary'),
    kvm_trace_aggregate: agg,
    kvm_trace_top: top,
    peers,
    decoder: {
      records_per_s: round(run.decoder.records_per_s, 0),
      with_json_records_per_s: round(run.decoder.with_json_records_per_s, 0),
      record_path_cpu_us: round(run.decoder.record_path_cpu_us, 3),
      note: run.decoder.note,
    },
    ringbuf: { records_per_s: round(run.ring.records_per_s, 0), note: run.ring.note },
    targets: targets(results, run),
    workloads: results,
    skipped_workloads: run.skippedWorkloads,
    notes: run.notes,
    host: {
      cores: cpus().length,
      kernel: release(),
      loadavg_start: run.loadavg.start.map((x) => round(x, 2)!),
      loadavg_end: run.loadavg.end.map((x) => round(x, 2)!),
      busy_cores_start: round(run.busyCores.start, 2),
      busy_cores_end: round(run.busyCores.end, 2),
    },
    idle: idleSummary(run),
    aborted: run.aborted,
  };
}

function idleSummary(run: BenchRun): BenchJson['idle'] {
  const out: BenchJson['idle'] = {};
  for (const id of [...new Set(run.samples.filter((s) => s.idle).map((s) => s.tracer))]) {
    const ok = run.samples.filter((s) => s.idle && s.tracer === id && !s.error);
    const med = (f: (s: Sample) => number | null | undefined, d: number): number | null => round(spread(ok.map(f))?.median, d);
    out[id] = { cpu_total_s: med((s) => s.cpu_total_s, 3), attach_s: med((s) => s.attach_s, 3), detach_s: med((s) => s.detach_s, 3), rss_mb: med((s) => s.rss_mb, 1), samples: ok.length };
  }
  return out;
}
