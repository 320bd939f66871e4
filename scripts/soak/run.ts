/**
 * One soak: the reference guest (`kvm-trace guest`, gated so nothing runs before the tracer is attached)
 * traced by `kvm-trace attach -p PID` — the real pipeline, BPF → ring → decode → JSONL, in its own process —
 * for N exits, with the tracer's RSS sampled every few seconds.
 *
 *   full        attach -o FILE: every record written; progress = KVM_RUN records in the file so far
 *   aggregate   attach --aggregate: counted in the kernel; progress interpolated over the guest's run
 *   otlp-stall  attach -o FILE --otlp URL, URL a node:http server that reads requests and never answers
 *
 * The capture file is real (a regular file the tracer writes through its normal sink) and is followed as it
 * grows (tail.ts), so nothing holds it in memory; it is deleted at the end (--keep keeps it): ~300 bytes
 * per record, ~3 GB for 10 M exits. Nothing may be lost: the tracer's summary must say lost 0 and
 * decode_errors 0, and its KVM_RUN count must equal the guest's own.
 */
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { cliMain } from '../bench/paths.js';
import { describeExit, lastLine, type ProcessSet, type Tracked } from '../bench/procs.js';
import { gated } from '../bench/workloads.js';
import { rssMB, rssVerdict, type RssVerdict, type Sample } from './samples.js';
import { CaptureTail } from './tail.js';

export type SoakMode = 'full' | 'aggregate' | 'otlp-stall';
export const SOAK_MODES: readonly SoakMode[] = ['full', 'aggregate', 'otlp-stall'];

export interface SoakOptions {
  mode: SoakMode;
  /** Guest exits in all (split over the vCPUs). */
  exits: number;
  vcpus: number;
  intervalS: number;
  /** Fraction of the exits counted as warm-up (not fitted). */
  warmup: number;
  dir: string;
  keep: boolean;
  /** attach --ring-mb (default: the tracer's own default). */
  ringMb?: number;
  say: (line: string) => void;
}

export interface SoakResult {
  mode: SoakMode;
  /** KVM_RUN calls the guest made (IO exits + one HLT per vCPU). */
  guestRuns: number;
  /** KVM_RUN calls the tracer counted (its summary). */
  tracedRuns: number;
  lost: number;
  decodeErrors: number;
  /** Records written to the capture file (full, otlp-stall). */
  records: number | null;
  fileBytes: number | null;
  seconds: number;
  rss: RssVerdict;
  samples: Sample[];
  /** attach's OpenTelemetry line (otlp-stall). */
  otel: string | null;
  /** What did not hold (empty: the soak passed). */
  problems: string[];
}

/** A server that takes every request and never answers: an OTLP receiver that stalls. */
async function stallingServer(): Promise<{ url: string; close: () => Promise<void>; requests: () => number }> {
  let requests = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((req) => {
    requests++;
    req.resume(); // read the body, answer nothing
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const mb = (n: number): string => `${n.toFixed(1)} MB`;

export async function runSoak(o: SoakOptions, procs: ProcessSet): Promise<SoakResult> {
  const perVcpu = Math.ceil(o.exits / o.vcpus);
  const file = join(o.dir, `soak-${o.mode}.jsonl`);
  const stall = o.mode === 'otlp-stall' ? await stallingServer() : undefined;
  const problems: string[] = [];
  let guest: Tracked | undefined;
  let attach: Tracked | undefined;
  const tail = o.mode === 'aggregate' ? undefined : new CaptureTail(file);
  try {
    const gargv = gated([process.execPath, cliMain, 'guest', '--scenario', 'pio-out', '--exits', String(perVcpu), '--vcpus', String(o.vcpus), '--json', '--no-long-mode']);
    guest = procs.spawn('guest', gargv[0], gargv.slice(1), { stdin: 'pipe' });
    const args = [cliMain, 'attach', '-p', String(guest.pid), '--quiet', '--json'];
    if (o.mode === 'aggregate') args.push('--aggregate');
    else args.push('-o', file);
    if (stall) args.push('--otlp', stall.url);
    if (o.ringMb !== undefined) args.push('--ring-mb', String(o.ringMb));
    attach = procs.spawn('attach', process.execPath, args, { gentle: true });
    await attach.waitFor('stderr', /attached: /, 60_000);
    o.say(`${o.mode}: tracer pid ${attach.pid} attached to guest pid ${guest.pid}; ${perVcpu * o.vcpus} exits on ${o.vcpus} vCPU(s)`);

    const samples: Sample[] = [];
    const t0 = performance.now();
    guest.child.stdin?.end('\n');
    const sample = (): void => {
      tail?.read();
      const rss = rssMB(attach!.pid);
      if (rss === undefined) return;
      const s: Sample = { t: (performance.now() - t0) / 1000, exits: tail ? tail.runs : NaN, rssMB: rss };
      samples.push(s);
      o.say(`  ${s.t.toFixed(0).padStart(5)} s  ${tail ? `${(s.exits / 1e6).toFixed(2)} M exits  lost ${tail.lost}  ` : ''}RSS ${mb(rss)}`);
    };
    sample();
    while (!guest.done) {
      await Promise.race([guest.exited, new Promise((r) => setTimeout(r, o.intervalS * 1000))]);
      if (!guest.done) sample();
    }
    const guestSeconds = (performance.now() - t0) / 1000;
    const gexit = await guest.exited;
    if (gexit.code !== 0) throw new Error(`the guest failed (${describeExit(gexit)}): ${lastLine(guest.stderr())}`);
    const gout = JSON.parse(lastLine(guest.stdout())) as { exits: Record<string, number>; vcpus: number };
    const guestRuns = Object.values(gout.exits).reduce((a, b) => a + b, 0);

    // The guest is done: one more sample once the tracer has drained, then stop it as a user would.
    await new Promise((r) => setTimeout(r, 500));
    sample();
    const stopped = await procs.stop(attach, 'SIGINT', 180_000);
    if (stopped.killed) problems.push(`the tracer did not stop within 180 s of SIGINT`);
    else if (stopped.exit.code !== 0) problems.push(`the tracer exited with ${describeExit(stopped.exit)}: ${lastLine(attach.stderr())}`);
    tail?.read();
    const summary = JSON.parse(lastLine(attach.stdout())) as {
      lost: number;
      decode_errors?: number;
      ioctls: Record<string, { count: number }>;
    };
    const tracedRuns = summary.ioctls.KVM_RUN?.count ?? 0;
    // Aggregate mode has no records to count as it goes: place each sample on the guest's steady run.
    if (!tail) for (const s of samples) s.exits = Math.min(tracedRuns, (tracedRuns * s.t) / guestSeconds);
    const rss = rssVerdict(samples, o.warmup * guestRuns);

    if (summary.lost !== 0) problems.push(`${summary.lost} records lost`);
    if ((summary.decode_errors ?? 0) !== 0) problems.push(`${summary.decode_errors} decode errors`);
    if (tracedRuns !== guestRuns) problems.push(`the tracer counted ${tracedRuns} KVM_RUNs, the guest made ${guestRuns}`);
    if (tail && tail.runs !== guestRuns) problems.push(`the capture file has ${tail.runs} KVM_RUN records, the guest made ${guestRuns}`);
    if (rss.slopeMBPerM === null) problems.push(`too few samples after warm-up (${rss.fitted}) to fit a slope`);
    else if (rss.slopeMBPerM >= 1) problems.push(`RSS grows ${rss.slopeMBPerM.toFixed(2)} MB per million exits after warm-up`);
    const otel = attach.stderr().split('\n').find((l) => l.startsWith('otel: ')) ?? null;
    if (stall && otel === null) problems.push('the tracer printed no otel line');
    if (stall) o.say(`  the stalling receiver took ${stall.requests()} requests and answered none`);
    return {
      mode: o.mode,
      guestRuns,
      tracedRuns,
      lost: summary.lost,
      decodeErrors: summary.decode_errors ?? 0,
      records: tail ? tail.records : null,
      fileBytes: tail ? tail.bytes : null,
      seconds: guestSeconds,
      rss,
      samples,
      otel,
      problems,
    };
  } finally {
    tail?.close();
    if (attach && !attach.done) await procs.stop(attach, 'SIGINT', 30_000);
    if (guest && !guest.done) await procs.stop(guest, 'SIGKILL', 5_000);
    await stall?.close();
    if (!o.keep) rmSync(file, { force: true });
  }
}
