/**
 * The span pipeline: tracer provider → BatchSpanProcessor (bounded queue) → counting wrapper → OTLP/HTTP
 * exporter (protobuf or JSON). Nothing here may block or throw into the capture: spans that do not reach the
 * collector are counted, and the first failure of each kind prints one warning line.
 *
 * What counts as dropped: spans that arrived at a full queue (seen through the processor's
 * self-observability counter, `otel.sdk.processor.span.processed` with error.type = "queue_full"), spans
 * whose export request failed (after the exporter's own retries), and, at close, spans that were still
 * queued or in flight when the flush bound expired. After close(), dropped = spans ended − spans exported.
 */
import { createNoopMeter } from '@opentelemetry/api';
import type { Counter, Meter, MeterProvider, Tracer } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import type { ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import type { Resource } from '@opentelemetry/resources';
import { AlwaysOnSampler, BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import type { OtlpProtocol } from './config.js';
import { oneLineError, withDeadline } from './util.js';

type WarnOnce = (cause: string, line: string) => void;

export interface TracePipelineOptions {
  url: string;
  protocol: OtlpProtocol;
  resource: Resource;
  maxQueue: number;
  batchSize: number;
  scheduleDelayMs: number;
  exportTimeoutMs: number;
  warn: WarnOnce;
}

export interface TraceDeliveryStats {
  exported: number;
  failed: number;
  queueDropped: number;
  exportErrors: number;
}

/** Counts what the wrapped exporter delivered and what it failed to, and warns once. */
class CountingExporter implements SpanExporter {
  exported = 0;
  failed = 0;
  errors = 0;

  constructor(
    private readonly inner: SpanExporter,
    private readonly url: string,
    private readonly warn: WarnOnce,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    try {
      this.inner.export(spans, (result) => {
        if (result.code === ExportResultCode.SUCCESS) this.exported += spans.length;
        else this.fail(spans.length, result.error);
        done(result);
      });
    } catch (err) {
      this.fail(spans.length, err);
      done({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }

  private fail(n: number, err: unknown): void {
    this.failed += n;
    this.errors++;
    this.warn(
      'export',
      `kvm-trace: warning: OTLP export to ${this.url} failed (${oneLineError(err)}); ` +
        'capture continues, undelivered spans are counted as dropped',
    );
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * A MeterProvider that only listens to the batch processor's "spans processed" counter, to learn of spans it
 * dropped at a full queue (the processor exposes this only as a self-observability metric).
 */
function queueDropListener(onDrop: (n: number) => void): MeterProvider {
  const noop = createNoopMeter();
  const meter: Meter = Object.create(noop);
  meter.createCounter = (name, options) => {
    if (name !== 'otel.sdk.processor.span.processed') return noop.createCounter(name, options);
    const counter: Counter = Object.create(noop.createCounter(name, options));
    counter.add = (value, attributes) => {
      if (attributes?.['error.type'] === 'queue_full') onDrop(value);
    };
    return counter;
  };
  return { getMeter: () => meter };
}

export class TracePipeline {
  readonly tracer: Tracer;
  private readonly provider: TracerProvider;
  private readonly exporter: CountingExporter;
  private queueDropped = 0;
  private closed?: Promise<void>;

  constructor(private readonly o: TracePipelineOptions) {
    // At close the batch processor sends every queued batch at once; the exporter must accept that many
    // concurrent requests or it fails the excess with "Concurrent export limit reached".
    const cfg = { url: o.url, timeoutMillis: o.exportTimeoutMs, concurrencyLimit: Math.ceil(o.maxQueue / o.batchSize) + 2 };
    const inner = o.protocol === 'http/json' ? new JsonTraceExporter(cfg) : new ProtoTraceExporter(cfg);
    this.exporter = new CountingExporter(inner, o.url, o.warn);
    const processor = new BatchSpanProcessor({
      exporter: this.exporter,
      maxQueueSize: o.maxQueue,
      maxExportBatchSize: o.batchSize,
      scheduledDelayMillis: o.scheduleDelayMs,
      exportTimeoutMillis: o.exportTimeoutMs,
      selfObsMeterProvider: queueDropListener((n) => this.onQueueDrop(n)),
    });
    // kvm-trace decides what becomes a span (run-span modes); an OTEL_TRACES_SAMPLER from the environment
    // must not silently discard the rest.
    this.provider = new TracerProvider({ resource: o.resource, sampler: new AlwaysOnSampler(), spanProcessors: [processor] });
    this.tracer = this.provider.getTracer('kvm-trace');
  }

  private onQueueDrop(n: number): void {
    this.queueDropped += n;
    this.o.warn(
      'queue',
      `kvm-trace: warning: span queue full (${this.o.maxQueue} spans; the collector is slow or unreachable); ` +
        'capture continues, dropped spans are counted',
    );
  }

  delivery(): TraceDeliveryStats {
    return {
      exported: this.exporter.exported,
      failed: this.exporter.failed,
      queueDropped: this.queueDropped,
      exportErrors: this.exporter.errors,
    };
  }

  /** Flush and shut down, giving up after `timeoutMs`; never rejects. */
  close(timeoutMs: number): Promise<void> {
    this.closed ??= withDeadline(this.provider.shutdown(), timeoutMs).then(
      () => undefined,
      () => undefined,
    );
    return this.closed;
  }
}
