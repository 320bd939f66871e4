/**
 * The capture lifecycle, libbpf-tools style, in one function:
 *   load + attach (KvmTracer) → map the ring (RingBufferConsumer) → seed already running processes from
 *   /proc → "attached" → run until the stop signal → drain what is left → detach and close in `finally`
 *   → finish decoding (kvm_run joins, leaks) → lost count → summary → close every sink.
 *
 * Aggregate-only (`aggregate`): the kernel counts instead of emitting ioctl records; the sinks get only the
 * summary, built from those counters (src/capture/aggregate-summary.ts) plus the fd lifecycle from the ring.
 *
 * Each decoded record is enriched on its way to the sinks: copied-buffer flags (misaligned, cache-line
 * crossing) and, for a failing KVM-type call, the ABI explanation visible from BTF. Nothing is lost on an
 * error path: what was captured is flushed to the sinks and the BPF side is always torn down.
 *
 * A bad record never ends a capture: if decoding it, enriching it or a sink's per-record work throws (or it
 * is too short or of an unknown type), it is skipped, counted in the summary's `decode_errors` (by cause in
 * `decode_error_causes`), and the first few are logged with their type and a hex dump (decode-errors.ts).
 */
import { readFileSync } from 'node:fs';
import { kernelBtf } from '../btf/kernel.js';
import { KvmTracer, type BpfIds, type TracerOptions } from '../bpf/tracer.js';
import { RingBufferConsumer } from '../ringbuf/index.js';
import { Decoder } from '../decode/decoder.js';
import { SummaryBuilder } from '../decode/summary.js';
import type { SummaryRecord, TraceRecord } from '../decode/records.js';
import type { RecordSink } from '../decode/sink.js';
import { FlagAnalyzer } from '../analysis/flags.js';
import { btfTypeSource } from '../btf/type-source.js';
import { systemLineSize } from '../analysis/cacheline.js';
import { explainFailure } from '../analysis/abi/explain.js';
import { ioctlByName } from '../kvm/abi/ioctl-table.js';
import { ExitPathAnalyzer } from '../analysis/exit-path.js';
import { untilAborted } from './stop-signal.js';
import { aggregateSummary } from './aggregate-summary.js';
import { errorLine, formatDecodeError } from '../decode/decode-errors.js';

export interface CaptureOptions extends Pick<TracerOptions, 'pids' | 'comm' | 'strategy' | 'ringBytes' | 'verbose' | 'aggregate'> {
  /** Ends the capture (SIGINT, SIGTERM, --duration, or the caller). */
  signal: AbortSignal;
  /** Every record goes to each sink, in order; the summary record last. */
  sinks: RecordSink[];
  /** Progress lines ("attached …", strategy, tracefs mount). */
  log?: (line: string) => void;
  /** Skip argument decoding and exit details (fastest). */
  lean?: boolean;
  /** Cache line size for the crossing flags; default: the system's. */
  lineSize?: number;
  /** Timed ring drain period (ms). */
  drainIntervalMs?: number;
  /**
   * Runs once everything is attached; the capture ends when the signal fires. (The demo runs the reference
   * guest here and stops the capture when it is done.)
   */
  onAttached?: (info: AttachInfo) => void | Promise<void>;
}

export interface AttachInfo {
  strategy: string;
  reason: string;
  programs: string[];
  attachMs: number;
  /** Kernel ids of the loaded programs, maps and links (to prove teardown). */
  ids: BpfIds;
}

export interface CaptureResult {
  summary: SummaryRecord;
  attach: AttachInfo;
}

/** Lost-record polling period: a `lost` record is emitted as soon as the kernel counter moves. */
const LOST_POLL_MS = 1000;

/**
 * Processes that were already running when we attached: their fd kinds and kvm_run mappings come from
 * /proc (fd symlinks, maps), since their KVM_CREATE_* and mmap calls happened before the programs existed.
 */
function seedRunning(decoder: Decoder, opts: CaptureOptions): void {
  const pids = opts.pids ?? [];
  if (pids.length > 0) {
    for (const pid of pids) decoder.seedProcess(pid);
    return;
  }
  const comm = opts.comm?.slice(0, 15);
  decoder.seedAll((pid) => comm === undefined || procComm(pid) === comm);
}

function procComm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trimEnd();
  } catch {
    return undefined;
  }
}

export async function capture(opts: CaptureOptions): Promise<CaptureResult> {
  const log = opts.log ?? (() => {});
  const started = process.hrtime.bigint();
  const btf = kernelBtf();
  const analyzer = new FlagAnalyzer({
    types: btfTypeSource(btf),
    lookup: ioctlByName,
    lineSize: opts.lineSize ?? systemLineSize(),
  });
  const summary = new SummaryBuilder();
  // Per-exit-reason KVM_RUN table and VMM handling time (full capture: it needs every KVM_RUN record).
  const exitPath = new ExitPathAnalyzer();
  const sinks = opts.sinks;
  let lostReported = 0;

  // Throws on a record a stage cannot handle: the decoder (deliver's caller) skips and counts it. A sink
  // that throws does not keep the record from the sinks after it.
  const deliver = (r: TraceRecord): void => {
    if (opts.aggregate) {
      // Aggregate-only: the ring carries only the fd lifecycle; it feeds the summary, the sinks get only that.
      summary.write(r);
      return;
    }
    if (r.type === 'ioctl' || r.type === 'copy') {
      const a = analyzer.analyze(r);
      if (a && a.flags.length > 0 && r.type === 'ioctl') r.flags = a.flags;
    }
    if (r.type === 'ioctl' && r.errno !== null) {
      const why = explainFailure(Number(r.cmd), r.errno, btf, r.fd_kind === 'unknown' ? undefined : r.fd_kind);
      if (why) r.explain = why;
    }
    summary.write(r);
    exitPath.write(r);
    let sinkError: unknown;
    for (const s of sinks) {
      try {
        s.write(r);
      } catch (err) {
        sinkError ??= err;
      }
    }
    if (sinkError !== undefined) throw sinkError;
  };
  let errorIndex = 0;
  const decoder = new Decoder({
    emit: deliver,
    btf,
    lean: opts.lean,
    onDecodeError: (sample) => {
      for (const line of formatDecodeError(sample, ++errorIndex)) log(line);
    },
    // Per-thread and per-process analysis state leaves with its thread or process.
    onThreadExit: (_pid, tid) => analyzer.forgetThread(tid),
    onProcessExit: (pid) => analyzer.forgetProcess(pid),
  });

  let tracer: KvmTracer | undefined;
  let consumer: RingBufferConsumer | undefined;
  let lostTimer: NodeJS.Timeout | undefined;
  let attach: AttachInfo | undefined;
  let result!: CaptureResult;
  let failure: unknown;
  // A background failure (ring drain) must end the wait even when no stop signal comes.
  let wake: () => void = () => {};
  const woken = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const reportLost = (): void => {
    const lost = tracer?.stats().lost ?? 0;
    if (lost > lostReported) {
      const count = lost - lostReported;
      lostReported = lost;
      try {
        deliver({ type: 'lost', count });
      } catch (err) {
        decoder.errors.add('threw', `${errorLine(err)} (lost record)`, undefined, 0, 0);
      }
    }
  };
  try {
    tracer = KvmTracer.open({
      pids: opts.pids,
      comm: opts.comm,
      strategy: opts.strategy,
      ringBytes: opts.ringBytes,
      verbose: opts.verbose,
      aggregate: opts.aggregate,
      log,
    });
    const stopOnError = (err: unknown): void => {
      failure ??= err;
      // One last look at the ring happens in `finally`; stop waiting now.
      wake();
    };
    consumer = new RingBufferConsumer(tracer.ringMapFd, tracer.ringBytes, {
      // The decoder counts short records itself (decode_errors), with a hex dump of the first ones.
      onRecord: (dv, off, len) => decoder.decode(dv, off, len),
      intervalMs: opts.drainIntervalMs,
      onError: stopOnError,
      onRingError: (line) => log(line),
    });
    seedRunning(decoder, opts);
    for (const w of decoder.warnings) log(w);
    lostTimer = setInterval(reportLost, LOST_POLL_MS);
    attach = {
      strategy: tracer.strategy,
      reason: tracer.reason,
      programs: tracer.programs,
      attachMs: Number(process.hrtime.bigint() - started) / 1e6,
      ids: tracer.ids(),
    };
    log(`attached: ${attach.programs.length} programs, strategy ${attach.strategy} (${attach.attachMs.toFixed(0)} ms)`);
    if (opts.verbose) log(`bpf ids: ${JSON.stringify(attach.ids)}`);
    const waiting = Promise.race([untilAborted(opts.signal), woken]);
    if (opts.onAttached) await Promise.race([opts.onAttached(attach), waiting]);
    await waiting;
    if (failure) throw failure;
    consumer.flush();
  } catch (err) {
    failure ??= err;
  } finally {
    if (lostTimer) clearInterval(lostTimer);
    try {
      // close() drains what is left unless a drain already failed.
      consumer?.close();
    } catch (err) {
      failure ??= err;
    }
    reportLost();
    const stats = tracer?.stats();
    tracer?.close();
    decoder.finish();
    let sumRec = summary.build({
      strategy: tracer?.strategy ?? 'none',
      lost: stats?.lost ?? 0,
      duration_s: Number(process.hrtime.bigint() - started) / 1e9,
      events: decoder.stats.events,
      unknown_ioctls: decoder.stats.unknownIoctls,
      extra: {
        decode_errors: decoder.errors.count,
        decode_error_causes: { ...decoder.errors.byCause },
        ring_resyncs: consumer?.stats.resyncs ?? 0,
        ring_skipped_bytes: consumer?.stats.skippedBytes ?? 0,
        rejected: decoder.stats.rejected + (consumer?.stats.rejected ?? 0),
        no_enter: stats?.noEnter ?? 0,
        state_unavailable: stats?.stateUnavailable ?? 0,
        flags: analyzer.totals,
        attach_ms: attach?.attachMs ?? null,
        ...exitPath.fields(),
        ...(failure ? { error: failure instanceof Error ? failure.message : String(failure) } : {}),
      },
    });
    if (tracer?.aggregateOnly) {
      try {
        sumRec = aggregateSummary(sumRec, tracer.aggregate(), opts.pids);
      } catch (err) {
        failure ??= err;
      }
    }
    for (const s of sinks) s.write(sumRec);
    await Promise.allSettled(sinks.map((s) => s.close()));
    result = { summary: sumRec, attach: attach ?? { strategy: 'none', reason: '', programs: [], attachMs: 0, ids: { progs: [], maps: [], links: [] } } };
  }
  if (failure) throw failure;
  return result;
}
