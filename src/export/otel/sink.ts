/**
 * The OpenTelemetry RecordSink: spans (span-builder.ts → trace-pipeline.ts) and metrics (metrics.ts, OTLP
 * and/or Prometheus) from one record stream. `kvm-trace attach --otlp URL` / `demo --otlp URL` plug it in
 * beside the JSONL sink; `exportRecords` replays records already captured (a JSONL file, a test).
 *
 * Reliability contract: write() never throws and never waits on the network (spans go to a bounded queue,
 * metrics are in-memory aggregates); close() ends every open span, flushes, and resolves within
 * flushTimeoutMs (plus a few ms) even when the collector is unreachable; what did not arrive is in stats().
 */
import { hostname } from 'node:os';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { TraceRecord } from '../../decode/records.js';
import type { RecordSink } from '../sink.js';
import { ATTR_HOST_NAME } from './attributes.js';
import { MonotonicToEpoch, type ClockPair } from './clock.js';
import { resolveOtelConfig, type OtelSinkOptions, type ResolvedOtelConfig } from './config.js';
import { MetricsPipeline } from './metrics.js';
import { SpanBuilder } from './span-builder.js';
import { TracePipeline } from './trace-pipeline.js';
import { oneLineError, packageVersion, warnOncePer } from './util.js';

export interface OtelStats {
  /** Spans ended and handed to the exporter (ioctl, aggregate KVM_RUN, vCPU, VM and process spans). */
  spans: number;
  /** Spans that did not reach the collector: queue full + failed exports (+ unflushed at close). */
  dropped: number;
  /** KVM_RUN records folded into aggregate spans. */
  aggregatedRuns: number;
  /** KVM_RUN records without a span in sample mode. */
  sampledOutRuns: number;
  /** Failed OTLP export requests (traces and metrics). */
  exportErrors: number;
  /** Spans the collector acknowledged. */
  exported: number;
  /** Records that made the sink itself fail (a bug; counted, warned once, never thrown). */
  internalErrors: number;
}

export interface OtelEndpoints {
  tracesUrl?: string;
  metricsUrl?: string;
  prometheusUrl?: string;
}

export interface OtelSink extends RecordSink {
  stats(): OtelStats;
  /** Bind the Prometheus endpoint (if any); rejects with a one-line Error when it cannot. Idempotent. */
  start(): Promise<OtelEndpoints>;
  readonly config: ResolvedOtelConfig;
}

export interface OtelSinkInternals {
  /** Clock pairing to use (tests); default: read both clocks now. */
  clock?: ClockPair;
  /**
   * When the capture ended, for spans still open at close(): 'now' (live capture, default) or
   * 'last-record' (replaying records captured earlier).
   */
  captureEnd?: 'now' | 'last-record';
}

const defaultWarn = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

export function createOtelSink(opts: OtelSinkOptions & OtelSinkInternals = {}): OtelSink {
  const config = resolveOtelConfig(opts);
  if (!config.tracesUrl && !config.metricsUrl && !config.prometheus) {
    throw new Error('nothing to export to: give --otlp URL (or set OTEL_EXPORTER_OTLP_ENDPOINT) or --prometheus PORT');
  }
  return new OtelSinkImpl(config, opts.warn ?? defaultWarn, new MonotonicToEpoch(opts.clock), opts.captureEnd ?? 'now');
}

/** createOtelSink + start(): the sink with its Prometheus endpoint listening. */
export async function openOtelSink(opts: OtelSinkOptions & OtelSinkInternals = {}): Promise<OtelSink> {
  const sink = createOtelSink(opts);
  try {
    await sink.start();
  } catch (err) {
    await sink.close();
    throw err;
  }
  return sink;
}

/** Export records captured earlier (open spans end at the last record's time); resolves with the stats. */
export async function exportRecords(
  records: Iterable<TraceRecord> | AsyncIterable<TraceRecord>,
  opts: OtelSinkOptions & OtelSinkInternals = {},
): Promise<OtelStats> {
  const sink = await openOtelSink({ captureEnd: 'last-record', ...opts });
  try {
    for await (const r of records) sink.write(r);
  } finally {
    await sink.close();
  }
  return sink.stats();
}

class OtelSinkImpl implements OtelSink {
  private readonly traces?: TracePipeline;
  private readonly builder?: SpanBuilder;
  private readonly metrics?: MetricsPipeline;
  private readonly idleTimer?: NodeJS.Timeout;
  private internalErrors = 0;
  private readonly warnOnce: (cause: string, line: string) => void;
  private closing?: Promise<void>;
  private final?: OtelStats;

  constructor(
    readonly config: ResolvedOtelConfig,
    private readonly warn: (line: string) => void,
    private readonly clock: MonotonicToEpoch,
    private readonly captureEnd: 'now' | 'last-record',
  ) {
    this.warnOnce = warnOncePer(warn);
    const resource = resourceFromAttributes({
      [ATTR_SERVICE_NAME]: config.serviceName,
      [ATTR_SERVICE_VERSION]: packageVersion(),
      [ATTR_HOST_NAME]: hostname(),
    });
    if (config.tracesUrl) {
      this.traces = new TracePipeline({
        url: config.tracesUrl,
        protocol: config.tracesProtocol,
        resource,
        maxQueue: config.maxQueue,
        batchSize: config.batchSize,
        scheduleDelayMs: config.scheduleDelayMs,
        exportTimeoutMs: config.exportTimeoutMs,
        warn: this.warnOnce,
      });
      this.builder = new SpanBuilder(this.traces.tracer, clock, config.runSpans);
      // Idle windows are a live-capture concern; a replay writes records far faster than wall time passes.
      if (config.runSpans.mode === 'aggregate' && captureEnd === 'now') {
        this.idleTimer = setInterval(() => this.guard(() => this.builder?.flushIdle()), config.runSpans.windowMs);
        this.idleTimer.unref();
      }
    }
    if (config.metricsUrl || config.prometheus) {
      this.metrics = new MetricsPipeline({
        resource,
        otlp: config.metricsUrl
          ? { url: config.metricsUrl, protocol: config.metricsProtocol, intervalMs: config.metricsIntervalMs, timeoutMs: config.exportTimeoutMs }
          : undefined,
        prometheus: config.prometheus,
        warn: this.warnOnce,
        spanStats: () => this.stats(),
      });
    }
  }

  async start(): Promise<OtelEndpoints> {
    const prometheusUrl = await this.metrics?.start();
    return { tracesUrl: this.config.tracesUrl, metricsUrl: this.config.metricsUrl, prometheusUrl };
  }

  write(record: TraceRecord): void {
    if (this.closing) return;
    if (this.builder) this.guard(() => this.builder!.write(record));
    if (this.metrics) this.guard(() => this.metrics!.write(record));
  }

  private guard(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.internalErrors++;
      this.warnOnce('internal', `kvm-trace: warning: OpenTelemetry export skipped a record (${oneLineError(err)}); counting further failures`);
    }
  }

  stats(): OtelStats {
    if (this.final) return { ...this.final };
    const counts = this.builder?.counts ?? { spans: 0, aggregatedRuns: 0, sampledOutRuns: 0 };
    const d = this.traces?.delivery() ?? { exported: 0, failed: 0, queueDropped: 0, exportErrors: 0 };
    return {
      spans: counts.spans,
      dropped: d.failed + d.queueDropped,
      aggregatedRuns: counts.aggregatedRuns,
      sampledOutRuns: counts.sampledOutRuns,
      exportErrors: d.exportErrors + (this.metrics?.exportErrors ?? 0),
      exported: d.exported,
      internalErrors: this.internalErrors,
    };
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.idleTimer) clearInterval(this.idleTimer);
    if (this.builder) {
      const now = MonotonicToEpoch.nowNs();
      const end = this.captureEnd === 'last-record' && this.builder.lastNs > 0 ? this.builder.lastNs : Math.max(now, this.builder.lastNs);
      this.guard(() => this.builder!.finish(end));
    }
    // Traces and metrics flush side by side, so the whole close stays within one flushTimeoutMs.
    const bound = this.config.flushTimeoutMs;
    await Promise.all([this.traces?.close(bound), this.metrics?.close(bound)]);
    const s = this.stats();
    // Whatever was ended but not acknowledged by now did not arrive (queued, in flight, or failed).
    s.dropped = Math.max(s.dropped, s.spans - s.exported);
    this.final = s;
  }
}
