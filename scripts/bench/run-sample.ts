/**
 * One measurement: one workload under one tracer. The tracer's whole lifecycle is exercised the way a user
 * would: started before the workload's first ioctl and waited for, then the workload, then SIGINT and wait
 * for a clean exit (a tracer that has to be killed is a failed sample). Whatever happens, both processes are
 * gone and the output file removed when this returns; a failure becomes `error` in the sample, not a throw.
 *
 * An idle sample (runIdleSample) is the same lifecycle around a workload that never starts: what attach,
 * detach and exit cost the tracer on their own, subtracted from a real run's CPU to get CPU per record.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pokeUntil } from './canary.js';
import { newestProfile } from './cpu-profile.js';
import { childrenCpuSeconds, cpuSeconds, RssSampler } from './proc-stats.js';
import { describeExit, lastLine, type ProcessSet, type Tracked } from './procs.js';
import { READY_MARK, type Tracer, type TracerId } from './tracers.js';
import { gated, parseWorkloadOutput, type Workload, type WorkloadId } from './workloads.js';

export interface Sample {
  workload: WorkloadId;
  tracer: TracerId;
  round: number;
  /** An idle baseline: attached to a workload that never ran, stopped at once (runIdleSample). */
  idle?: boolean;
  /** The workload's loop time (its own elapsed_s). */
  elapsed_s: number | null;
  exits: number | null;
  timing?: 'loop' | 'run' | 'wall';
  /** Tracer start → ready ("attached", or the canary ioctl seen). */
  attach_s?: number | null;
  /** SIGINT → kvm-trace's summary on stdout (the user sees it stop); for other tracers, → exit. */
  detach_s?: number | null;
  /** SIGINT → the tracer's process exited. */
  exit_s?: number | null;
  /** Tracer's peak RSS (VmHWM) in MiB. */
  rss_mb?: number | null;
  /** Tracer's CPU seconds until it was told to stop. */
  cpu_s?: number | null;
  /** Tracer's CPU seconds over its whole life (attach … exit, all threads): RUSAGE_CHILDREN around its reaping. */
  cpu_total_s?: number | null;
  /** kvm-trace summary: records written, lost, and KVM_RUN records among them. */
  events?: number | null;
  lost?: number | null;
  kvm_run_records?: number | null;
  /** --cpu-prof: the tracer's V8 CPU profile of this run. */
  profile?: string | null;
  error?: string;
}

export interface SampleContext {
  procs: ProcessSet;
  tmpDir: string;
  exits: number;
  /** Where `node --cpu-prof` writes kvm-trace's profiles (--cpu-prof), else null. */
  cpuProfDir?: string | null;
}

const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 30_000;

export async function runSample(ctx: SampleContext, w: Workload, t: Tracer, round: number): Promise<Sample> {
  const base: Sample = { workload: w.id, tracer: t.id, round, elapsed_s: null, exits: null };
  const outFile = join(ctx.tmpDir, `${t.id}.${w.id}.${round}.out`);
  let tracer: Tracked | undefined;
  let work: Tracked | undefined;
  let sampler: RssSampler | undefined;
  const startedEpochMs = Date.now();
  try {
    let attach_s: number | null = null;
    if (t.style === 'system') {
      const argv = t.systemArgv!(process.pid);
      const tr = (tracer = ctx.procs.spawn(t.id, argv[0], argv.slice(1), { stdoutFile: outFile, gentle: true }));
      sampler = new RssSampler(tr.pid);
      await pokeUntil(() => fileHas(outFile, READY_MARK), READY_TIMEOUT_MS, 20, () =>
        tr.done ? `${t.id} exited before attaching: ${lastLine(tr.stderr())}` : null,
      );
      attach_s = (performance.now() - tr.startedMs) / 1000;
    }

    const workArgv = t.style === 'wrap' ? [...t.wrapArgv!(outFile), ...gated(w.argv(ctx.exits))] : gated(w.argv(ctx.exits));
    work = ctx.procs.spawn(w.id, workArgv[0], workArgv.slice(1), { stdin: 'pipe' });
    if (t.style === 'wrap') sampler = new RssSampler(work.pid); // the wrapper process is the tracer

    if (t.style === 'attach') {
      const argv = t.attachArgv!(work.pid, outFile);
      tracer = ctx.procs.spawn(t.id, argv[0], argv.slice(1), { gentle: true });
      sampler = new RssSampler(tracer.pid);
      await tracer.waitFor('stderr', /\battached\b/, READY_TIMEOUT_MS);
      attach_s = (performance.now() - tracer.startedMs) / 1000;
    }

    const go = performance.now();
    work.child.stdin?.end('\n');
    const wexit = await work.exited;
    const workEnd = performance.now();
    const wall = (workEnd - go) / 1000;
    if (wexit.code !== 0) throw new Error(`${w.id} failed (${describeExit(wexit)}): ${lastLine(work.stderr())}`);
    const result = parseWorkloadOutput(work.stdout(), wall);
    const sample: Sample = { ...base, elapsed_s: result.elapsed_s, exits: result.exits, timing: result.timing };
    if (t.style === 'none') return sample;

    sample.attach_s = attach_s;
    sample.rss_mb = sampler?.finish() ?? null;
    if (!tracer) return sample; // wrap: the tracer exited with its workload

    sample.cpu_s = cpuSeconds(tracer.pid);
    if (tracer.done && (tracer.exitedMs ?? 0) < workEnd) {
      throw new Error(`${t.id} exited while the workload ran: ${lastLine(tracer.stderr())}`);
    }
    // A tracer may also stop by itself once its -p target is gone; then there is no detach time to measure.
    const stoppedItself = tracer.done;
    Object.assign(sample, await stopTracer(ctx, t, tracer, outFile));
    if (stoppedItself) sample.detach_s = sample.exit_s = sample.cpu_total_s = null;
    if (ctx.cpuProfDir && t.style === 'attach') sample.profile = newestProfile(ctx.cpuProfDir, startedEpochMs);
    return sample;
  } catch (e) {
    return { ...base, error: (e as Error).message.split('\n')[0] };
  } finally {
    sampler?.finish();
    if (work && !work.done) await ctx.procs.stop(work, 'SIGKILL', 5_000);
    if (tracer && !tracer.done) await ctx.procs.stop(tracer, 'SIGINT', 10_000);
    rmSync(outFile, { force: true });
  }
}

/**
 * SIGINT the tracer and measure: time to its summary on stdout and to its exit, its whole-life CPU, and
 * (kvm-trace) the summary's counts. Throws when it has to be killed or fails.
 */
async function stopTracer(ctx: SampleContext, t: Tracer, tracer: Tracked, outFile: string): Promise<Partial<Sample>> {
  const out: Partial<Sample> = {};
  const cpuBefore = childrenCpuSeconds();
  const signalled = performance.now();
  // kvm-trace attach --json prints its summary object on stdout once stopped: that is when the user sees it stop.
  const summarySeen = t.hasSummary
    ? tracer.waitFor('stdout', /^\{"type":"summary"/m, STOP_GRACE_MS).then(() => performance.now(), () => null)
    : Promise.resolve(null);
  const stop = await ctx.procs.stop(tracer, 'SIGINT', STOP_GRACE_MS);
  if (stop.killed) throw new Error(`${t.id} did not exit within ${STOP_GRACE_MS / 1000} s of SIGINT (killed)`);
  out.cpu_total_s = tracer.done ? Math.max(0, childrenCpuSeconds() - cpuBefore) : null;
  out.exit_s = stop.seconds;
  const seen = await summarySeen;
  out.detach_s = seen !== null ? (seen - signalled) / 1000 : stop.seconds;
  if (stop.exit.code !== 0 && stop.exit.signal === null) {
    throw new Error(`${t.id} exited with code ${stop.exit.code} after SIGINT: ${lastLine(tracer.stderr())}`);
  }
  if (t.hasSummary) {
    const summary = readSummary(outFile, tracer.stdout());
    if (!summary) throw new Error(`${t.id} wrote no summary (no {"type":"summary"} line in -o FILE or on stdout)`);
    out.events = num(summary.events);
    out.lost = num(summary.lost);
    const runs = (summary.ioctls as Record<string, { count?: unknown }> | undefined)?.KVM_RUN?.count;
    out.kvm_run_records = num(runs);
  }
  return out;
}

/**
 * The idle baseline of an attaching tracer: attach to the gated workload, which never gets its go and so
 * makes no KVM ioctl, then stop at once. Its CPU is what attach, detach and exit cost without records.
 */
export async function runIdleSample(ctx: SampleContext, w: Workload, t: Tracer, round: number): Promise<Sample> {
  const base: Sample = { workload: w.id, tracer: t.id, round, idle: true, elapsed_s: null, exits: null };
  const outFile = join(ctx.tmpDir, `${t.id}.idle.${round}.out`);
  let tracer: Tracked | undefined;
  let sampler: RssSampler | undefined;
  const work = ctx.procs.spawn(`${w.id} (idle)`, '/bin/sh', ['-c', 'read -r _go'], { stdin: 'pipe' });
  try {
    if (t.style !== 'attach' || !t.attachArgv) throw new Error(`${t.id} does not attach to a pid`);
    const argv = t.attachArgv(work.pid, outFile);
    tracer = ctx.procs.spawn(t.id, argv[0], argv.slice(1), { gentle: true });
    sampler = new RssSampler(tracer.pid);
    await tracer.waitFor('stderr', /\battached\b/, READY_TIMEOUT_MS);
    const sample: Sample = { ...base, attach_s: (performance.now() - tracer.startedMs) / 1000, cpu_s: cpuSeconds(tracer.pid) };
    sample.rss_mb = sampler.finish();
    Object.assign(sample, await stopTracer(ctx, t, tracer, outFile));
    return sample;
  } catch (e) {
    return { ...base, error: (e as Error).message.split('\n')[0] };
  } finally {
    sampler?.finish();
    if (!work.done) await ctx.procs.stop(work, 'SIGKILL', 5_000);
    if (tracer && !tracer.done) await ctx.procs.stop(tracer, 'SIGINT', 10_000);
    rmSync(outFile, { force: true });
  }
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function fileHas(path: string, text: string): boolean {
  try {
    return readFileSync(path, 'utf8').includes(text);
  } catch {
    return false;
  }
}

/** The summary object: last line of the -o JSONL file (read from its tail only), else a JSON line on stdout. */
export function readSummary(outFile: string, stdout: string): Record<string, unknown> | null {
  const candidates: string[] = [];
  if (existsSync(outFile)) candidates.push(...tail(outFile, 4 << 20).split('\n').reverse());
  candidates.push(...stdout.split('\n').reverse());
  // --json may also pretty-print the object over several lines: try the last block that opens at column 0.
  const block = stdout.lastIndexOf('\n{');
  candidates.push(stdout.slice(block + 1).replace(/\s*\n\s*/g, ' '));
  for (const line of candidates) {
    const s = line.trim();
    if (!s.startsWith('{')) continue;
    try {
      const o = JSON.parse(s) as Record<string, unknown>;
      if (o.type === 'summary' || ('events' in o && 'lost' in o)) return o;
    } catch {
      // a partial line at the start of the tail window, or live output: skip
    }
  }
  return null;
}

function tail(path: string, bytes: number): string {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, bytes);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}
