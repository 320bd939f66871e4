/**
 * The benchmark run: decide what can be measured on this machine (workloads built, tracers installed),
 * warm every workload up once, then run the rounds — in each round, an idle attach/detach of every kvm-trace
 * mode (the CPU baseline), then for each workload untraced and every tracer back to back (A B C …, reversed
 * in even rounds), so each slowdown ratio compares runs made moments apart — and finally the throughput
 * stages. The host's busy cores are measured for a second before and after. Returns raw samples; report.ts
 * turns them into the table and JSON.
 */
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchOptions } from './options.js';
import { ProcessSet } from './procs.js';
import { recordRawStream } from './record-raw.js';
import { busyCores } from './proc-stats.js';
import { runIdleSample, runSample, type Sample } from './run-sample.js';
import { decoderThroughput, ringDrainThroughput, type Throughput } from './throughput.js';
import { discoverTracers, ensureTracefs, type Tracer } from './tracers.js';
import {
  buildCLoop,
  cliHasCommand,
  DEFAULT_WORKLOADS,
  describeWorkload,
  makeWorkload,
  type Workload,
  type WorkloadId,
} from './workloads.js';

/** Peers run on the single-vCPU PIO loops only: they are slow, and that is the workload HOST.md reports. */
const PEER_WORKLOADS: WorkloadId[] = ['guest-pio-1', 'c-pio-1'];

export interface BenchRun {
  options: BenchOptions;
  workloads: Workload[];
  /** Workloads that could not run, with the reason. */
  skippedWorkloads: Array<{ id: WorkloadId; label: string; reason: string }>;
  tracers: Tracer[];
  samples: Sample[];
  ring: Throughput;
  decoder: Throughput & { with_json_records_per_s?: number | null; record_path_cpu_us?: number | null };
  notes: string[];
  loadavg: { start: number[]; end: number[] };
  /** Cores busy on the host (all processes) over one second before the rounds and after them. */
  busyCores: { start: number | null; end: number | null };
  aborted: boolean;
}

export interface RunnerHooks {
  progress(text: string): void;
  signal: AbortSignal;
}

/** Make sure this machine can run KVM workloads at all; throws one clear line otherwise. */
function checkKvm(): void {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    throw new Error('/dev/kvm is missing or not accessible: the benchmark needs KVM (run as root on a KVM host)');
  }
}

export function tracersFor(w: Workload, tracers: Tracer[]): Tracer[] {
  return tracers.filter((t) => t.unavailable === null && (!t.peer || PEER_WORKLOADS.includes(w.id)));
}

export async function runBench(opts: BenchOptions, procs: ProcessSet, hooks: RunnerHooks): Promise<BenchRun> {
  checkKvm();
  const { loadavg, cpus } = await import('node:os');
  const cores = cpus().length;
  const notes: string[] = [];
  if (opts.smoke) notes.push('smoke run: workloads and throughput passes are tiny, the numbers only prove the harness works');
  const tmpDir = mkdtempSync(join(tmpdir(), 'kvm-bench-'));
  // Also removed if the bench is forced out (a second Ctrl-C) before the finally below runs.
  const removeTmp = (): void => rmSync(tmpDir, { recursive: true, force: true });
  process.on('exit', removeTmp);
  try {
    const wanted = opts.workloads ?? (opts.smoke ? ['guest-pio-1' as const] : DEFAULT_WORKLOADS);
    const skippedWorkloads: BenchRun['skippedWorkloads'] = [];
    const haveGuest = cliHasCommand('guest');
    const needC = wanted.some((id) => id.startsWith('c-')) || (opts.smoke && !haveGuest);
    const cBuild = needC ? buildCLoop(tmpDir) : { reason: 'not requested' };
    const cBinary = 'binary' in cBuild ? cBuild.binary : null;

    let ids: WorkloadId[] = [...wanted];
    // The smoke run needs one workload: the reference guest, or the C loop until the guest exists.
    if (opts.smoke && !haveGuest && !opts.workloads && cBinary) {
      ids = ['c-pio-1'];
      notes.push('reference guest not built yet: the smoke run used the C kvm-loop');
    }
    const candidates: Workload[] = [];
    for (const id of ids) {
      const d = describeWorkload(id);
      if (d.kind === 'guest' && !haveGuest) skippedWorkloads.push({ id, label: d.label, reason: 'kvm-trace guest is not built yet' });
      else if (d.kind === 'c' && !cBinary) skippedWorkloads.push({ id, label: d.label, reason: 'reason' in cBuild ? cBuild.reason : 'not built' });
      else candidates.push(makeWorkload(id, cBinary, true));
    }

    // Warm-up (untraced, small): proves each workload runs before any tracer is involved, warms the page
    // cache, and tells whether the guest's --exits counts per vCPU or in total.
    const workloads: Workload[] = [];
    for (const w of candidates) {
      hooks.progress(`warm-up: ${w.label}`);
      const warmExits = Math.min(opts.exits, 2000);
      const s = await runSample({ procs, tmpDir, exits: warmExits }, w, { id: 'untraced', label: 'untraced', style: 'none', peer: false, unavailable: null }, 0);
      if (hooks.signal.aborted) break;
      if (s.error || s.exits === null) {
        skippedWorkloads.push({ id: w.id, label: w.label, reason: `warm-up failed: ${s.error ?? 'no exit count'}` });
        continue;
      }
      if (w.kind === 'guest' && w.vcpus > 1 && s.exits < warmExits * 0.5) {
        // It was asked for warmExits / vcpus per vCPU and made about that many in all: the guest's --exits
        // is a total over all vCPUs, so pass the total unchanged from now on.
        workloads.push(makeWorkload(w.id, cBinary, false));
      } else workloads.push(w);
      if (s.timing === 'run') notes.push(`${w.label}: reports no loop time, timed by its elapsed_s (includes VM set-up)`);
      if (s.timing === 'wall') notes.push(`${w.label}: reports no time, timed by the bench's clock (includes start-up)`);
    }
    if (workloads.length === 0 && !hooks.signal.aborted) {
      throw new Error(`no workload can run: ${skippedWorkloads.map((s) => `${s.id}: ${s.reason}`).join('; ')}`);
    }

    if (opts.cpuProf) mkdirSync(opts.cpuProf, { recursive: true });
    let tracers = discoverTracers(opts.cpuProf).filter((t) => t.id === 'untraced' || !opts.tracers || opts.tracers.includes(t.id));
    if (!opts.peers) tracers = tracers.filter((t) => !t.peer);
    if (tracers.some((t) => (t.id === 'perf-trace' || t.id.startsWith('bpftrace')) && t.unavailable === null)) {
      const note = ensureTracefs();
      if (note) notes.push(note);
    }

    const samples: Sample[] = [];
    // The idle baseline of each kvm-trace mode (attach, detach, exit with no records), once per round.
    const idleTracers = workloads.length > 0 ? tracers.filter((t) => !t.peer && t.style === 'attach' && t.hasSummary && t.unavailable === null) : [];
    const total = opts.rounds * (idleTracers.length + workloads.reduce((n, w) => n + tracersFor(w, tracers).length, 0));
    hooks.progress('host load before the rounds');
    const start = { loadavg: loadavg(), busy: await busyCores(1000, cores) };
    let done = 0;
    outer: for (let round = 1; round <= opts.rounds; round++) {
      for (const t of idleTracers) {
        if (hooks.signal.aborted) break outer;
        done++;
        hooks.progress(`round ${round}/${opts.rounds} · idle attach/detach · ${t.label} (${done}/${total})`);
        const s = await runIdleSample({ procs, tmpDir, exits: 0 }, workloads[0], t, round);
        if (!(hooks.signal.aborted && s.error)) samples.push(s);
      }
      for (const w of workloads) {
        // Even rounds run the list backwards (untraced last), so a slow drift in the machine's load does
        // not always favour the same side of a ratio.
        const order = tracersFor(w, tracers);
        if (round % 2 === 0) order.reverse();
        for (const t of order) {
          if (hooks.signal.aborted) break outer;
          done++;
          hooks.progress(`round ${round}/${opts.rounds} · ${w.label} · ${t.label} (${done}/${total})`);
          const s = await runSample({ procs, tmpDir, exits: opts.exits, cpuProfDir: opts.cpuProf }, w, t, round);
          // A run cut short by the bench's own Ctrl-C is not a result.
          if (!(hooks.signal.aborted && s.error)) samples.push(s);
        }
      }
    }

    const busyEnd = hooks.signal.aborted ? null : await busyCores(1000, cores);
    let ring: Throughput = { records_per_s: null, records: 0, seconds: 0, note: 'not run (aborted)' };
    let decoder: BenchRun['decoder'] = ring;
    if (!hooks.signal.aborted) {
      hooks.progress('ring-buffer drain throughput');
      ring = await ringDrainThroughput(opts.throughputSeconds, opts.throughputRecords).catch((e: Error) => failed(e));
      const source = workloads[0];
      hooks.progress(`decoder throughput: recording a raw stream of ${source.label}`);
      const recording = await recordRawStream(procs, source, Math.min(opts.exits, 50_000), join(tmpDir, 'recorded.ktraw'));
      hooks.progress('decoder throughput: decoding it');
      decoder = await decoderThroughput(recording, opts.throughputSeconds, opts.throughputRecords, join(tmpDir, 'record-path.jsonl')).catch((e: Error) => failed(e));
      if (!('reason' in recording) && recording.lost > 0) notes.push(`the decoder's recording lost ${recording.lost} records (ring full)`);
    }
    return {
      options: opts,
      workloads,
      skippedWorkloads,
      tracers,
      samples,
      ring,
      decoder,
      notes,
      loadavg: { start: start.loadavg, end: loadavg() },
      busyCores: { start: start.busy, end: busyEnd },
      aborted: hooks.signal.aborted,
    };
  } finally {
    await procs.stopAll();
    removeTmp();
    process.off('exit', removeTmp);
  }
}

function failed(e: Error): Throughput {
  return { records_per_s: null, records: 0, seconds: 0, note: `failed: ${e.message.split('\n')[0]}` };
}
