/**
 * The OpenTelemetry RecordSink: spans (span-builder.ts → trace-pipeline.ts) and metrics (record-metrics.ts →
 * OTLP and/or Prometheus readers) from one record stream, set up through NodeSDK. `kvm-trace attach --otlp URL`
 * / `demo --otlp URL` plug it in beside the JSONL sink; `exportRecords` replays records already captured.
 *
 * NodeSDK is the entry point: it builds the tracer and meter providers, the resource (service.name and
 * service.version defaults, then OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME and host.* from its detectors,
 * then --service-name), span limits from OTEL_*_LIMIT, and registers the global providers the span builder's
 * tracer comes from. It gets kvm-trace's own span processor and metric readers, so the drop and export-error
 * counts stay in the summary; the exporters inside them read the OTLP variables themselves (exporters.ts).
 * No context manager and no propagator are registered: spans get explicit parents, nothing is propagated,
 * and an AsyncLocalStorage context manager would put a hook on every promise of the capture.
 *
 * Reliability contract: write() never throws and never waits on the network (spans go to a bounded queue,
 * metrics are in-memory aggregates); close() ends every open span, flushes, and resolves within
 * flushTimeoutMs (plus a few ms) even when the collector is unreachable; what did not arrive is in stats().
 * One sink per process at a time (NodeSDK registers process-wide providers); close() unregisters them.
 */
import { metrics as metricsApi, trace } from '@opentelemetry/api';
import type { ContextManager } from '@opentelemetry/api';
import { logs } from '@opentelemetry/api-logs';
import { defaultResource, envDetector, hostDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { AlwaysOnSampler } from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { TraceRecord } from '../../decode/records.js';
import type { CaptureHealth, RecordSink } from '../../decode/sink.js';
import { MonotonicToEpoch, type ClockPair } from './clock.js';
import { MetricsPipeline } from './metrics.js';
import { DEFAULT_SERVICE_NAME, resolveOtelConfig, type OtelSinkOptions, type ResolvedOtelConfig } from './options.js';
import { SpanBuilder } from './span-builder.js';
import { TracePipeline } from './trace-pipeline.js';
import { oneLineError, packageVersion, warnOncePer, withDeadline } from './util.js';

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
  process.stderr.write(`kvm-trace: ${line}\n`);
};

/** Set while a sink is open: NodeSDK's providers are process-wide. */
let openSink: OtelSinkImpl | undefined;

export function createOtelSink(opts: OtelSinkOptions & OtelSinkInternals = {}): OtelSink {
  const config = resolveOtelConfig(opts);
  if (!config.traces && !config.metrics && !config.prometheus) {
    throw new Error('nothing to export to: give --otlp URL (or set OTEL_EXPORTER_OTLP_ENDPOINT) or --prometheus PORT');
  }
  if (openSink) throw new Error('an OpenTelemetry export is already open in this process; close it first');
  openSink = new OtelSinkImpl(config, opts.warn ?? defaultWarn, new MonotonicToEpoch(opts.clock), opts.captureEnd ?? 'now');
  return openSink;
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
  private readonly sdk: NodeSDK;
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
    // Requests give up within the close bound, so a dead collector does not outlive the capture.
    const exportTimeoutMs = Math.max(1000, config.flushTimeoutMs);
    if (config.traces) {
      this.traces = new TracePipeline({
        target: config.traces,
        maxQueue: config.maxQueue,
        batchSize: config.batchSize,
        scheduleDelayMs: config.scheduleDelayMs,
        exportTimeoutMs,
        warn: this.warnOnce,
      });
    }
    if (config.metrics || config.prometheus) {
      this.metrics = new MetricsPipeline({
        otlp: config.metrics,
        intervalMs: config.metricsIntervalMs,
        exportTimeoutMs,
        prometheus: config.prometheus,
        warn: this.warnOnce,
        spanStats: () => this.stats(),
      });
    }
    this.sdk = new NodeSDK({
      // Lowest precedence: the detectors' attributes (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME, host.*)
      // and then serviceName (--service-name) are merged over it.
      resource: defaultResource().merge(
        resourceFromAttributes({ [ATTR_SERVICE_NAME]: DEFAULT_SERVICE_NAME, [ATTR_SERVICE_VERSION]: packageVersion() }),
      ),
      serviceName: config.serviceName,
      // Not the process detector: process.* describes the traced VMM on spans, not the tracer. The environment
      // last, so that OTEL_RESOURCE_ATTRIBUTES can override a detected host.name (later detectors win).
      // OTEL_NODE_RESOURCE_DETECTORS, when set, chooses instead.
      resourceDetectors: process.env.OTEL_NODE_RESOURCE_DETECTORS ? undefined : [hostDetector, envDetector],
      spanProcessors: this.traces ? [this.traces.processor] : [],
      metricReaders: this.metrics?.readers ?? [],
      logRecordProcessors: [],
      instrumentations: [],
      // kvm-trace decides what becomes a span (run-span modes); OTEL_TRACES_SAMPLER must not drop the rest.
      sampler: new AlwaysOnSampler(),
      // null = register none (NodeSDK's documented meaning; its type does not say so).
      contextManager: null as unknown as ContextManager,
      textMapPropagator: null,
    });
    this.sdk.start();
    if (this.traces) {
      this.builder = new SpanBuilder(trace.getTracer('kvm-trace', packageVersion()), clock, config.runSpans);
      // Idle windows are a live-capture concern; a replay writes records far faster than wall time passes.
      if (config.runSpans.mode === 'aggregate' && captureEnd === 'now') {
        this.idleTimer = setInterval(() => this.guard(() => this.builder?.flushIdle()), config.runSpans.windowMs);
        this.idleTimer.unref();
      }
    }
  }

  async start(): Promise<OtelEndpoints> {
    const prometheusUrl = await this.metrics?.start();
    return { tracesUrl: this.config.traces?.url, metricsUrl: this.config.metrics?.url, prometheusUrl };
  }

  health(h: CaptureHealth): void {
    if (this.closing || !this.metrics) return;
    this.guard(() => this.metrics!.health(h));
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
      this.warnOnce('internal', `warning: OpenTelemetry export skipped a record (${oneLineError(err)}); counting further failures`);
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
    // NodeSDK flushes traces and metrics side by side, so the whole close stays within one flushTimeoutMs.
    await withDeadline(this.sdk.shutdown(), this.config.flushTimeoutMs);
    await this.metrics?.prometheus?.close();
    // Unregister what NodeSDK registered, so that a later sink in this process can register its own.
    if (this.traces) trace.disable();
    if (this.metrics) metricsApi.disable();
    logs.disable();
    openSink = undefined;
    const s = this.stats();
    // Whatever was ended but not acknowledged by now did not arrive (queued, in flight, or failed).
    const unacked = s.spans - s.exported - s.dropped;
    s.dropped = Math.max(s.dropped, s.spans - s.exported);
    if (unacked > 0) {
      this.warnOnce(
        'export',
        `warning: the collector did not acknowledge ${unacked} spans within ${this.config.flushTimeoutMs} ms; they are counted as dropped`,
      );
    }
    this.final = s;
  }
}
