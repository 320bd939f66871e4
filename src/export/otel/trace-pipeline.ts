/**
 * The span pipeline's own parts, handed to NodeSDK (which builds the tracer provider around them): a
 * BatchSpanProcessor (bounded queue) → counting wrapper → OTLP exporter (gRPC, HTTP/protobuf or HTTP/JSON).
 * Nothing here may block or throw into the capture: spans that do not reach the collector are counted, and
 * the first failure of each kind prints one warning line.
 *
 * What counts as dropped: spans that arrived at a full queue (seen through the processor's
 * self-observability counter, `otel.sdk.processor.span.processed` with error.type = "queue_full"), spans
 * whose export request failed (after the exporter's own retries), and, at close, spans that were still
 * queued or in flight when the flush bound expired. After close(), dropped = spans ended − spans exported.
 */
import { createNoopMeter } from '@opentelemetry/api';
import type { Counter, Meter, MeterProvider } from '@opentelemetry/api';
import { ExportResultCode, getNumberFromEnv } from '@opentelemetry/core';
import type { ExportResult } from '@opentelemetry/core';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace';
import type { ReadableSpan, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';
import { spanExporter, targetLabel } from './exporters.js';
import type { SignalTarget } from './options.js';
import { oneLineError } from './util.js';

type WarnOnce = (cause: string, line: string) => void;

export interface TracePipelineOptions {
  target: SignalTarget;
  /** Explicit settings (flags); unset ones come from OTEL_BSP_* or kvm-trace's defaults. */
  maxQueue?: number;
  batchSize?: number;
  scheduleDelayMs?: number;
  /** One OTLP request, retries included (unless OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT sets it). */
  exportTimeoutMs: number;
  warn: WarnOnce;
}

/** Larger than the SDK's 2048: a VMM's setup ioctls arrive in bursts. */
export const DEFAULT_MAX_QUEUE = 8192;
export const DEFAULT_BATCH_SIZE = 512;
/** Shorter than the SDK's 5 s: a live capture should show up in the tracing UI promptly. */
export const DEFAULT_SCHEDULE_DELAY_MS = 1000;

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
      `warning: OTLP export to ${this.url} failed (${oneLineError(err)}); ` +
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
  /** Goes into NodeSDK's spanProcessors. */
  readonly processor: SpanProcessor;
  readonly maxQueue: number;
  private readonly exporter: CountingExporter;
  private queueDropped = 0;

  constructor(private readonly o: TracePipelineOptions) {
    // The batch processor's OTEL_BSP_* variables are read where NodeSDK would read them (it only does for the
    // processors it builds itself); a flag wins over the variable.
    this.maxQueue = o.maxQueue ?? getNumberFromEnv('OTEL_BSP_MAX_QUEUE_SIZE') ?? DEFAULT_MAX_QUEUE;
    const batchSize = Math.min(this.maxQueue, o.batchSize ?? getNumberFromEnv('OTEL_BSP_MAX_EXPORT_BATCH_SIZE') ?? DEFAULT_BATCH_SIZE);
    const inner = spanExporter(o.target, o.exportTimeoutMs, Math.ceil(this.maxQueue / batchSize) + 2);
    this.exporter = new CountingExporter(inner, targetLabel(o.target, 'traces'), o.warn);
    this.processor = new BatchSpanProcessor({
      exporter: this.exporter,
      maxQueueSize: this.maxQueue,
      maxExportBatchSize: batchSize,
      scheduledDelayMillis: o.scheduleDelayMs ?? getNumberFromEnv('OTEL_BSP_SCHEDULE_DELAY') ?? DEFAULT_SCHEDULE_DELAY_MS,
      exportTimeoutMillis: getNumberFromEnv('OTEL_BSP_EXPORT_TIMEOUT'),
      selfObsMeterProvider: queueDropListener((n) => this.onQueueDrop(n)),
    });
  }

  private onQueueDrop(n: number): void {
    this.queueDropped += n;
    this.o.warn(
      'queue',
      `warning: span queue full (${this.maxQueue} spans; the collector is slow or unreachable); ` +
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
}
