/**
 * The capture lifecycle, libbpf-tools style, in one function:
 *   load (on a worker thread, while the decoder is built) + attach (KvmTracer) → map the ring (RingBufferConsumer) → seed already running processes from
 *   /proc → "attached" → run until the stop signal → drain what is left → summary to the sinks and to the
 *   caller (onSummary) → detach and close in `finally`.
 *
 * The per-record work (decode, buffer flags, ABI explanation, summary, sinks) is RecordPath's, shared with
 * the offline decode of a binary capture; with `rawFile` every raw record is also kept, with what decoding
 * it later needs (ktcap/). Aggregate-only (`aggregate`): the kernel counts instead of emitting ioctl
 * records; the sinks get only the summary, built from those counters (aggregate-summary.ts). With the
 * hardware-exit hooks the summary also says whether kvm:kvm_exit fired and, if so, what (kernel-summary.ts).
 *
 * Stopping is quick: the ring is drained at once (no timer is waited for), the summary goes out, and only
 * then are the links detached — side by side, since each detach waits for RCU grace periods in the kernel.
 * Nothing is lost on an error path: what was captured is flushed to the sinks and the BPF side is always
 * torn down.
 *
 * A bad record never ends a capture (record-path.ts): it is skipped, counted in the summary's
 * `decode_errors`, and the first few are logged with their type and a hex dump. A corrupt ring header is
 * resynchronised at the producer position, counted (`ring_resyncs`, `ring_skipped_bytes`) and logged.
 */
import { Btf } from '../btf/index.js';
import { kernelBtf } from '../btf/kernel.js';
import { KvmTracer, type BpfIds, type HookResult, type TracerOptions } from '../bpf/tracer.js';
import { RingBufferConsumer } from '../ringbuf/index.js';
import type { HookStatus, SummaryRecord } from '../decode/records.js';
import type { RecordSink } from '../decode/sink.js';
import { pidsWithKvmFds, procComm, readProcSeed, type ProcSeed } from '../decode/processes.js';
import { systemLineSize } from '../analysis/cacheline.js';
import { untilAborted } from './stop-signal.js';
import { kernelSummary } from './kernel-summary.js';
import { MMIO_GRANULE } from '../analysis/exit-key.js';
import { RecordPath, type CaptureFacts } from './record-path.js';
import type { CaptureWriter } from './ktcap/writer.js';
import { layoutFingerprint } from './ktcap/format.js';
import { release } from 'node:os';

export interface CaptureOptions extends Pick<TracerOptions, 'pids' | 'comm' | 'strategy' | 'ringBytes' | 'verbose' | 'aggregate' | 'hwExits' | 'mmioGranule'> {
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
  /** The summary, as soon as it is built and the sinks are closed — before the BPF side is detached. */
  onSummary?: (summary: SummaryRecord) => void;
  /** Also keep every raw record, with what decoding it later needs, in this binary capture (ktcap/). */
  raw?: CaptureWriter;
  /**
   * Decode the records live (default true). With `raw` and nothing to show live, false: the record path
   * is then one copy per record, and the summary has only the counts (events = raw records).
   */
  decode?: boolean;
  /** kvm-trace's version, for a binary capture's head. */
  version?: string;
}

export interface AttachInfo {
  strategy: string;
  reason: string;
  programs: string[];
  /** Per copy hook (kernel function): attached or not, and why. */
  hooks: Record<string, HookStatus>;
  attachMs: number;
  /** Kernel ids of the loaded programs, maps and links (to prove teardown). */
  ids: BpfIds;
}

export interface CaptureResult {
  summary: SummaryRecord;
  attach: AttachInfo;
}

/** How often the running counts go out: a `lost` record as soon as the kernel counter moves, and the sinks'
 * health counts (decode errors, ring resyncs). */
const COUNTS_POLL_MS = 1000;

/**
 * What /proc shows of processes that were already running when we attached: their fd kinds and kvm_run
 * mappings, since their KVM_CREATE_* and mmap calls happened before the programs existed.
 */
/** The summary's `hooks`: the tracer's per-hook results keyed by the kernel function each observes. */
export function hookStatus(hooks: readonly HookResult[]): Record<string, HookStatus> {
  return Object.fromEntries(hooks.map((h) => [h.hook, h.program ? { attached: h.attached, program: h.program, reason: h.reason } : { attached: h.attached, reason: h.reason }]));
}

function runningSeeds(opts: CaptureOptions): ProcSeed[] {
  const pids = opts.pids ?? [];
  if (pids.length > 0) return pids.map((pid) => readProcSeed(pid));
  const comm = opts.comm?.slice(0, 15);
  const out: ProcSeed[] = [];
  for (const pid of pidsWithKvmFds()) {
    if (comm !== undefined && procComm(pid) !== comm) continue;
    try {
      out.push(readProcSeed(pid));
    } catch {
      // exited between the scan and the seeding
    }
  }
  return out;
}

export async function capture(opts: CaptureOptions): Promise<CaptureResult> {
  const log = opts.log ?? (() => {});
  const started = process.hrtime.bigint();
  const btf = kernelBtf();
  // The BPF object loads on a worker thread while the decoder is built here (the tracer's probes and
  // flex-array plan read the same parsed BTF first).
  const opening = KvmTracer.openAsync({
    pids: opts.pids,
    comm: opts.comm,
    strategy: opts.strategy,
    ringBytes: opts.ringBytes,
    verbose: opts.verbose,
    aggregate: opts.aggregate,
    hwExits: opts.hwExits,
    mmioGranule: opts.mmioGranule,
    log,
  });
  let path: RecordPath;
  try {
    path = new RecordPath({ btf, sinks: opts.sinks, lean: opts.lean, aggregate: opts.aggregate, lineSize: opts.lineSize ?? systemLineSize(), mmioGranule: opts.mmioGranule, log });
  } catch (err) {
    // Nothing was captured yet: undo the BPF side and fail as before any attach.
    await opening.then((t) => t.close(), () => {});
    throw err;
  }
  let lostReported = 0;

  let tracer: KvmTracer | undefined;
  let consumer: RingBufferConsumer | undefined;
  let countsTimer: NodeJS.Timeout | undefined;
  let attach: AttachInfo | undefined;
  let result!: CaptureResult;
  let failure: unknown;
  // A background failure (ring drain) must end the wait even when no stop signal comes.
  let wake: () => void = () => {};
  const woken = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const raw = opts.raw;
  const decode = opts.decode ?? true;
  // Every COUNTS_POLL_MS and once at the end: records the ring could not take, and the running health counts.
  const reportCounts = (): void => {
    if (consumer) path.health(consumer.stats.rejected, consumer.stats.resyncs);
    const lost = tracer?.stats().lost ?? 0;
    if (lost > lostReported) {
      const count = lost - lostReported;
      lostReported = lost;
      raw?.lost(count);
      path.deliverSafely({ type: 'lost', count }); // a timer callback: a throw here would end the process
    }
  };
  const onRecord = !raw
    ? path.onRecord
    : decode
      ? (dv: DataView, off: number, len: number): void => {
          raw.add(dv, off, len);
          path.onRecord(dv, off, len);
        }
      : raw.add;
  try {
    tracer = await opening;
    const stopOnError = (err: unknown): void => {
      failure ??= err;
      // One last look at the ring happens in `finally`; stop waiting now.
      wake();
    };
    consumer = new RingBufferConsumer(tracer.ringMapFd, tracer.ringBytes, {
      // Records too short for a header reach the decoder too: it counts them (decode_errors) with a hex dump.
      onRecord,
      intervalMs: opts.drainIntervalMs,
      onError: stopOnError,
      onRingError: log,
    });
    // Copies through routines an attached hook sees are observed from here on, never derived.
    const hooks = hookStatus(tracer.hooks);
    path.setHooks(hooks);
    const seeds = runningSeeds(opts);
    path.seed(seeds);
    raw?.begin(
      {
        tool: 'kvm-trace',
        version: opts.version ?? 'unknown',
        created: new Date().toISOString(),
        kernel: release(),
        clock: { monotonic_ns: String(process.hrtime.bigint()), realtime_ns: String(BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6))) },
        strategy: tracer.strategy,
        programs: tracer.programs,
        hooks,
        options: { pids: opts.pids ?? [], comm: opts.comm ?? null, lean: opts.lean === true },
        line_size: path.lineSize,
        layout: layoutFingerprint(),
      },
      // The merged kernel BTF's own level is KVM's module BTF when KVM is a module; vmlinux is its base.
      btf === Btf.vmlinux() ? { vmlinux: btf.bytes } : { vmlinux: Btf.vmlinux().bytes, kvm: btf.bytes },
      seeds,
    );
    for (const w of path.decoder.warnings) log(w);
    countsTimer = setInterval(reportCounts, COUNTS_POLL_MS);
    attach = {
      strategy: tracer.strategy,
      reason: tracer.reason,
      programs: tracer.programs,
      hooks,
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
    if (countsTimer) clearInterval(countsTimer);
    try {
      // close() drains what is left unless a drain already failed.
      consumer?.close();
    } catch (err) {
      failure ??= err;
    }
    let detached: Promise<void> = Promise.resolve();
    let sumRec: SummaryRecord | undefined;
    try {
      reportCounts();
      const stats = tracer?.stats();
      // The kernel's maps (aggregate counters; hardware exits in either mode), read before detaching.
      const kernelAgg = tracer && (tracer.aggregateOnly || tracer.hwExits.requested) ? tracer.aggregate() : undefined;
      // From here on nothing more is read from the ring: detach while the summary is built and written.
      if (tracer) detached = tracer.detach();
      path.finish();
      const facts: CaptureFacts = {
        strategy: tracer?.strategy ?? 'none',
        lost: stats?.lost ?? 0,
        duration_s: Number(process.hrtime.bigint() - started) / 1e9,
        ringRejected: consumer?.stats.rejected ?? 0,
        ringResyncs: consumer?.stats.resyncs ?? 0,
        ringSkippedBytes: consumer?.stats.skippedBytes ?? 0,
        noEnter: stats?.noEnter ?? 0,
        stateUnavailable: stats?.stateUnavailable ?? 0,
        attachMs: attach?.attachMs ?? null,
        ...(failure ? { error: failure instanceof Error ? failure.message : String(failure) } : {}),
      };
      sumRec = path.buildSummary(facts);
      if (!decode) sumRec.events = raw?.records ?? 0;
      await raw?.end({
        strategy: facts.strategy, lost: facts.lost, duration_s: facts.duration_s, ring_rejected: facts.ringRejected,
        no_enter: facts.noEnter, state_unavailable: facts.stateUnavailable, attach_ms: facts.attachMs, ...(facts.error !== undefined ? { error: facts.error } : {}),
      });
      if (kernelAgg && tracer && stats) {
        try {
          sumRec = kernelSummary(sumRec, {
            agg: kernelAgg,
            stats,
            hw: tracer.hwExits,
            aggregate: tracer.aggregateOnly,
            records: path.decoder.stats,
            granule: opts.mmioGranule ?? MMIO_GRANULE,
            comm: (pid) => path.comms.get(pid) || procComm(pid) || '',
            log,
          });
        } catch (err) {
          failure ??= err;
        }
      }
      await path.close(sumRec);
      opts.onSummary?.(sumRec);
    } finally {
      await detached.catch(() => {});
      tracer?.close();
    }
    result = { summary: sumRec!, attach: attach ?? { strategy: 'none', reason: '', programs: [], hooks: {}, attachMs: 0, ids: { progs: [], maps: [], links: [] } } };
  }
  if (failure) throw failure;
  return result;
}
