/**
 * The per-record work of a capture, in one place so the live session and the offline decode of a binary
 * capture (ktcap/) turn the same raw records into the same JSONL records: raw kt_* record → Decoder →
 * enrichment (copied-buffer flags, and for a failing KVM-type call the ABI explanation visible from BTF) →
 * summary and exit path (exit table, VMM handling time) → every sink, in order; at the end the summary record from the decoded counters and the run's
 * facts (CaptureFacts: what only the live run knew).
 *
 * Cost per record matters here (issue 13: ≤ 1 µs for the whole record path): the hot KVM_RUN record takes
 * the analyzer's and the summary's fast paths and the JSONL sink's cached segments; nothing here allocates
 * beyond the record the decoder builds.
 *
 * Aggregate-only (`aggregate`): the ring carries only the fd lifecycle; it feeds the summary, the sinks get
 * only the summary record.
 *
 * A record a stage throws on — the decoder, the analysis, a sink's per-record formatting — is skipped and
 * counted by the decoder (decode_errors, with the records too short or of an unknown type), the first few
 * logged with their type and a hex dump; a sink that throws does not keep the record from the sinks after it.
 * Threads and processes that exit take their per-thread and per-process analysis state with them.
 */
import type { Btf } from '../btf/index.js';
import { Decoder } from '../decode/decoder.js';
import { SummaryBuilder } from '../decode/summary.js';
import type { HookStatus, SummaryRecord, TraceRecord } from '../decode/records.js';
import type { RecordSink } from '../decode/sink.js';
import { FlagAnalyzer } from '../analysis/flags.js';
import { btfTypeSource } from '../btf/type-source.js';
import { explainFailure } from '../analysis/abi/explain.js';
import { ioctlByName } from '../kvm/abi/ioctl-table.js';
import { ExitPathAnalyzer } from '../analysis/exit-path.js';
import { procComm, type ProcSeed } from '../decode/processes.js';
import { errorLine, formatDecodeError } from '../decode/decode-errors.js';

export interface RecordPathOptions {
  btf: Btf;
  sinks: RecordSink[];
  /** Skip argument decoding and exit details. */
  lean?: boolean;
  aggregate?: boolean;
  /** Cache line size for the crossing flags. */
  lineSize: number;
  /** MMIO range size the handling time is keyed by (a power of two; default a page). */
  mmioGranule?: number;
  /** Where the first bad records are described (one line, then the hex dump). */
  log?: (line: string) => void;
}

/** What only the live run knew, which the summary reports (kept in a binary capture's trailer). */
export interface CaptureFacts {
  strategy: string;
  /** Records the kernel could not put in the ring. */
  lost: number;
  duration_s: number;
  /** Records shorter than a kt_hdr, dropped by the ring consumer before decoding. */
  ringRejected: number;
  noEnter: number;
  stateUnavailable: number;
  attachMs: number | null;
  /** Times the ring was resynchronised after a corrupt header, and the bytes that skipped. */
  ringResyncs?: number;
  ringSkippedBytes?: number;
  error?: string;
}

export class RecordPath {
  readonly decoder: Decoder;
  readonly summary = new SummaryBuilder();
  readonly analyzer: FlagAnalyzer;
  /** Per-exit-reason KVM_RUN table and VMM handling time (full capture: it needs every KVM_RUN record). */
  readonly exitPath: ExitPathAnalyzer;
  /** Aggregate-only: process names, read from /proc while the processes live (their fd records). */
  readonly comms = new Map<number, string>();
  /** The cache line size the flags use. */
  readonly lineSize: number;
  private readonly sinks: RecordSink[];
  private readonly btf: Btf;
  private readonly aggregate: boolean;
  private hooks: Record<string, HookStatus> | undefined;

  constructor(opts: RecordPathOptions) {
    this.btf = opts.btf;
    this.sinks = opts.sinks;
    this.aggregate = opts.aggregate === true;
    this.lineSize = opts.lineSize;
    this.exitPath = new ExitPathAnalyzer({ mmioGranule: opts.mmioGranule });
    this.analyzer = new FlagAnalyzer({ types: btfTypeSource(opts.btf), lookup: ioctlByName, lineSize: opts.lineSize });
    const log = opts.log;
    let errors = 0;
    this.decoder = new Decoder({
      emit: (r) => this.deliver(r),
      btf: opts.btf,
      lean: opts.lean,
      onDecodeError: log ? (sample) => formatDecodeError(sample, ++errors).forEach((l) => log(l)) : undefined,
      onThreadExit: (_pid, tid) => this.analyzer.forgetThread(tid),
      onProcessExit: (pid) => this.analyzer.forgetProcess(pid),
    });
  }

  /**
   * The copy hooks of the run, attached or not (the tracer's, or a binary capture's META): copies through
   * the routines the attached ones see are observed, never derived; the summary lists them.
   */
  setHooks(hooks: Record<string, HookStatus>): void {
    this.hooks = hooks;
    this.analyzer.setHooks(Object.entries(hooks).filter(([, h]) => h.attached).map(([n]) => n));
  }

  /** Seed the fd table of processes running before the capture (their /proc state, read at attach). */
  seed(seeds: readonly ProcSeed[]): void {
    for (const s of seeds) this.decoder.procs.seed(s);
  }

  /** One raw ring record (zero-copy: valid during the call only; a short one is counted as rejected). */
  readonly onRecord = (dv: DataView, off: number, len: number): void => this.decoder.decode(dv, off, len);

  /** One decoded record: enriched, counted into the summary, handed to every sink. */
  deliver(r: TraceRecord): void {
    if (this.aggregate) {
      if (r.type === 'fd' && !this.comms.has(r.pid)) this.comms.set(r.pid, procComm(r.pid) ?? '');
      this.summary.write(r);
      return;
    }
    if (r.type === 'ioctl' || r.type === 'copy') {
      const a = this.analyzer.analyze(r);
      if (a && a.flags.length > 0 && r.type === 'ioctl') r.flags = a.flags;
    }
    if (r.type === 'ioctl' && r.errno !== null) {
      const why = explainFailure(Number(r.cmd), r.errno, this.btf, r.fd_kind === 'unknown' ? undefined : r.fd_kind);
      if (why) r.explain = why;
    }
    this.summary.write(r);
    this.exitPath.write(r);
    let sinkError: unknown;
    for (const s of this.sinks) {
      try {
        s.write(r);
      } catch (err) {
        sinkError ??= err;
      }
    }
    if (sinkError !== undefined) throw sinkError; // the decoder counts the record (decode_errors)
  }

  /** deliver() for a record built outside the decoder (lost counts): a throw is counted, not raised. */
  deliverSafely(r: TraceRecord): void {
    try {
      this.deliver(r);
    } catch (err) {
      this.decoder.errors.add('threw', `${errorLine(err)} (${r.type} record)`, undefined, 0, 0, err);
    }
  }

  /** The running decode-error and resync counts to every sink that wants them; a throw is counted, not raised. */
  health(ringRejected: number, ringResyncs: number): void {
    const h = { decode_errors: this.decoder.errors.count + ringRejected, ring_resyncs: ringResyncs };
    for (const s of this.sinks) {
      try {
        s.health?.(h);
      } catch (err) {
        this.decoder.errors.add('threw', `${errorLine(err)} (health counts)`, undefined, 0, 0, err);
      }
    }
  }

  /** End of the records: the kvm_run joins still open are emitted. */
  finish(): void {
    this.decoder.finish();
  }

  /** The summary record (not yet handed to the sinks). */
  buildSummary(f: CaptureFacts): SummaryRecord {
    const d = this.decoder.stats;
    return this.summary.build({
      strategy: f.strategy,
      lost: f.lost,
      duration_s: f.duration_s,
      events: d.events,
      unknown_ioctls: d.unknownIoctls,
      extra: {
        decode_errors: this.decoder.errors.count + f.ringRejected,
        decode_error_causes: { ...this.decoder.errors.byCause, short: this.decoder.errors.byCause.short + f.ringRejected },
        ring_resyncs: f.ringResyncs ?? 0,
        ring_skipped_bytes: f.ringSkippedBytes ?? 0,
        rejected: d.rejected + f.ringRejected,
        no_enter: f.noEnter,
        state_unavailable: f.stateUnavailable,
        ...(this.hooks ? { hooks: this.hooks } : {}),
        flags: this.analyzer.totals,
        attach_ms: f.attachMs,
        ...this.exitPath.fields(),
        ...(f.error !== undefined ? { error: f.error } : {}),
      },
    });
  }

  /** Write the summary record to every sink and close them all (each settles: delivered or counted). */
  async close(summary: SummaryRecord): Promise<void> {
    for (const s of this.sinks) s.write(summary);
    await Promise.allSettled(this.sinks.map((s) => s.close()));
  }
}
