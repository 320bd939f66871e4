/**
 * The metric readers handed to NodeSDK: a periodic OTLP reader (gRPC, HTTP/protobuf or HTTP/JSON) whose
 * exporter is wrapped to count failed exports, and/or the Prometheus scrape endpoint. Both read the capture's
 * counts from RecordMetrics (record-metrics.ts) through the MetricProducer extension point.
 */
import type { ExportResult } from '@opentelemetry/core';
import { ExportResultCode, getNumberFromEnv } from '@opentelemetry/core';
import { PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import type { AggregationOption, AggregationTemporality, IMetricReader, InstrumentType, PushMetricExporter, ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { TraceRecord } from '../../decode/records.js';
import type { CaptureHealth } from '../../decode/sink.js';
import { metricExporter, targetLabel } from './exporters.js';
import type { SignalTarget } from './options.js';
import { PrometheusEndpoint } from './prometheus.js';
import { RecordMetrics, type SpanCounts } from './record-metrics.js';
import { oneLineError } from './util.js';

/** Shorter than the SDK's 60 s: a capture often lasts less than a minute. */
export const DEFAULT_METRIC_INTERVAL_MS = 10_000;

export interface MetricsPipelineOptions {
  otlp?: SignalTarget;
  /** Explicit export interval; else OTEL_METRIC_EXPORT_INTERVAL or DEFAULT_METRIC_INTERVAL_MS. */
  intervalMs?: number;
  /** One OTLP request, retries included (unless OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT sets it). */
  exportTimeoutMs: number;
  prometheus?: { host: string; port: number };
  /** (cause, line): one warning per cause for the whole sink. */
  warn: (cause: string, line: string) => void;
  /** Live span counters for the observable instruments. */
  spanStats: SpanCounts;
}

/** Counts failed metric exports and warns once; forwards everything else to the real exporter. */
class CountingMetricExporter implements PushMetricExporter {
  errors = 0;

  constructor(
    private readonly inner: PushMetricExporter,
    private readonly label: string,
    private readonly warn: (cause: string, line: string) => void,
  ) {}

  export(metrics: ResourceMetrics, done: (result: ExportResult) => void): void {
    this.inner.export(metrics, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) {
        this.errors++;
        this.warn(
          'export',
          `warning: OTLP export to ${this.label} failed (${oneLineError(result.error)}); ` +
            'capture continues, undelivered spans are counted as dropped',
        );
      }
      done(result);
    });
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  selectAggregationTemporality(t: InstrumentType): AggregationTemporality {
    return this.inner.selectAggregationTemporality!(t);
  }

  selectAggregation(t: InstrumentType): AggregationOption {
    return this.inner.selectAggregation!(t);
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}

export class MetricsPipeline {
  readonly producer: RecordMetrics;
  /** Goes into NodeSDK's metricReaders. */
  readonly readers: IMetricReader[] = [];
  readonly prometheus?: PrometheusEndpoint;
  private readonly exporter?: CountingMetricExporter;

  constructor(o: MetricsPipelineOptions) {
    this.producer = new RecordMetrics(o.spanStats);
    if (o.otlp) {
      this.exporter = new CountingMetricExporter(metricExporter(o.otlp, o.exportTimeoutMs), targetLabel(o.otlp, 'metrics'), o.warn);
      // The reader's OTEL_METRIC_EXPORT_* variables are read where NodeSDK reads them for its own readers.
      const intervalMs = o.intervalMs ?? getNumberFromEnv('OTEL_METRIC_EXPORT_INTERVAL') ?? DEFAULT_METRIC_INTERVAL_MS;
      const timeoutMs = Math.min(getNumberFromEnv('OTEL_METRIC_EXPORT_TIMEOUT') ?? 30_000, intervalMs);
      this.readers.push(
        new PeriodicExportingMetricReader({
          exporter: this.exporter,
          exportIntervalMillis: intervalMs,
          exportTimeoutMillis: timeoutMs,
          metricProducers: [this.producer],
        }),
      );
    }
    if (o.prometheus) {
      this.prometheus = new PrometheusEndpoint(o.prometheus.host, o.prometheus.port, [this.producer]);
      this.readers.push(this.prometheus.reader);
    }
  }

  /** Start the scrape endpoint (if any); resolves with its URL. */
  async start(): Promise<string | undefined> {
    return this.prometheus ? this.prometheus.listen() : undefined;
  }

  get exportErrors(): number {
    return this.exporter?.errors ?? 0;
  }

  health(h: CaptureHealth): void {
    this.producer.health(h);
  }

  write(r: TraceRecord): void {
    this.producer.write(r);
  }
}
