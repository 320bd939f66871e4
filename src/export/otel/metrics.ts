/**
 * Metrics of a capture, exported over OTLP/HTTP and/or served on a Prometheus scrape endpoint.
 *
 * | OTel instrument               | kind               | unit      | attributes                                         | Prometheus name                      |
 * |-------------------------------|--------------------|-----------|----------------------------------------------------|--------------------------------------|
 * | kvm.ioctl.calls               | counter            | {call}    | kvm.ioctl.name, kvm.ioctl.errno ("none" = success), kvm.fd.kind | kvm_ioctl_calls_total  |
 * | kvm.ioctl.duration.seconds    | histogram          | s         | kvm.ioctl.name                                     | kvm_ioctl_duration_seconds_{bucket,sum,count} |
 * | kvm.exits                     | counter            | {exit}    | process.pid, kvm.vm, kvm.vcpu, kvm.exit.reason     | kvm_exits_total                      |
 * | kvm.buffer.flags              | counter            | {buffer}  | kvm.ioctl.name, kvm.buffer.flag (misaligned / cacheline_cross), kvm.buffer.what | kvm_buffer_flags_total |
 * | kvm.records.lost              | counter            | {record}  | –                                                  | kvm_records_lost_total               |
 * | kvm.trace.spans.dropped       | observable counter | {span}    | –                                                  | kvm_trace_spans_dropped_total        |
 * | kvm.trace.runs.aggregated     | observable counter | {run}     | –                                                  | kvm_trace_runs_aggregated_total      |
 * | kvm.trace.runs.sampled_out    | observable counter | {run}     | –                                                  | kvm_trace_runs_sampled_out_total     |
 *
 * Prometheus translation: dots become underscores, monotonic counters get `_total`, annotation units in
 * braces add nothing. The histogram carries its unit in its name ("….seconds") on purpose: the
 * OpenTelemetry Collector's Prometheus exporters append a unit suffix unless the name already ends with it,
 * while the Prometheus exporter used here never does, so only that spelling gives the same series name both
 * ways and one dashboard serves both setups. Exits count successful KVM_RUNs by the exit reason they
 * returned; lost records come from `lost` records (topped up from the summary's total).
 */
import type { Attributes, Counter, Histogram } from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPMetricExporter as JsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import type { Resource } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import type {
  AggregationOption,
  AggregationTemporality,
  IMetricReader,
  InstrumentType,
  PushMetricExporter,
  ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import type { IoctlRecord, TraceRecord } from '../../decode/records.js';
import * as A from './attributes.js';
import type { OtlpProtocol } from './config.js';
import { PrometheusEndpoint } from './prometheus.js';
import { oneLineError, withDeadline } from './util.js';

export const METRIC_IOCTL_CALLS = 'kvm.ioctl.calls';
export const METRIC_IOCTL_DURATION = 'kvm.ioctl.duration.seconds';
export const METRIC_EXITS = 'kvm.exits';
export const METRIC_BUFFER_FLAGS = 'kvm.buffer.flags';
export const METRIC_RECORDS_LOST = 'kvm.records.lost';
export const METRIC_SPANS_DROPPED = 'kvm.trace.spans.dropped';
export const METRIC_RUNS_AGGREGATED = 'kvm.trace.runs.aggregated';
export const METRIC_RUNS_SAMPLED_OUT = 'kvm.trace.runs.sampled_out';

/** Histogram buckets (seconds): a PIO exit here is ~8 µs, a KVM_CREATE_VM some ms, a HLT may block for long. */
export const DURATION_BUCKETS_S = [
  1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1, 10,
];

/** The errno label of a successful ioctl (a label must have a value for PromQL matchers to be simple). */
export const ERRNO_NONE = 'none';

export interface MetricsPipelineOptions {
  resource: Resource;
  otlp?: { url: string; protocol: OtlpProtocol; intervalMs: number; timeoutMs: number };
  prometheus?: { host: string; port: number };
  /** (cause, line): one warning per cause for the whole sink. */
  warn: (cause: string, line: string) => void;
  /** Live span counters for the observable instruments. */
  spanStats: () => { dropped: number; aggregatedRuns: number; sampledOutRuns: number };
}

/** Counts failed metric exports and warns once; forwards everything else to the real exporter. */
class CountingMetricExporter implements PushMetricExporter {
  errors = 0;

  constructor(
    private readonly inner: PushMetricExporter,
    private readonly url: string,
    private readonly warn: (cause: string, line: string) => void,
  ) {}

  export(metrics: ResourceMetrics, done: (result: ExportResult) => void): void {
    this.inner.export(metrics, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) {
        this.errors++;
        this.warn('export', `kvm-trace: warning: OTLP export to ${this.url} failed (${oneLineError(result.error)}); capture continues`);
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
  private readonly provider: MeterProvider;
  private readonly calls: Counter;
  private readonly duration: Histogram;
  private readonly exits: Counter;
  private readonly flags: Counter;
  private readonly lost: Counter;
  private readonly exporter?: CountingMetricExporter;
  readonly prometheus?: PrometheusEndpoint;
  private lostSeen = 0;
  private closed?: Promise<void>;

  constructor(o: MetricsPipelineOptions) {
    const readers: IMetricReader[] = [];
    if (o.otlp) {
      const cfg = { url: o.otlp.url, timeoutMillis: o.otlp.timeoutMs };
      const inner = o.otlp.protocol === 'http/json' ? new JsonMetricExporter(cfg) : new ProtoMetricExporter(cfg);
      this.exporter = new CountingMetricExporter(inner, o.otlp.url, o.warn);
      readers.push(
        new PeriodicExportingMetricReader({
          exporter: this.exporter,
          exportIntervalMillis: o.otlp.intervalMs,
          exportTimeoutMillis: Math.min(o.otlp.timeoutMs, o.otlp.intervalMs),
        }),
      );
    }
    if (o.prometheus) {
      this.prometheus = new PrometheusEndpoint(o.prometheus.host, o.prometheus.port);
      readers.push(this.prometheus.reader);
    }
    this.provider = new MeterProvider({ resource: o.resource, readers });
    const meter = this.provider.getMeter('kvm-trace');
    this.calls = meter.createCounter(METRIC_IOCTL_CALLS, { unit: '{call}', description: 'KVM ioctls by name, errno and fd kind' });
    this.duration = meter.createHistogram(METRIC_IOCTL_DURATION, {
      unit: 's',
      description: 'KVM ioctl latency (syscall entry to exit)',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS_S },
    });
    this.exits = meter.createCounter(METRIC_EXITS, { unit: '{exit}', description: 'KVM_RUN exits by reason and vCPU' });
    this.flags = meter.createCounter(METRIC_BUFFER_FLAGS, {
      unit: '{buffer}',
      description: 'Copied ioctl buffers that are misaligned or cross more 64-byte cache lines than needed',
    });
    this.lost = meter.createCounter(METRIC_RECORDS_LOST, { unit: '{record}', description: 'Records the ring buffer could not take' });
    meter
      .createObservableCounter(METRIC_SPANS_DROPPED, { unit: '{span}', description: 'Spans that did not reach the collector' })
      .addCallback((r) => r.observe(o.spanStats().dropped));
    meter
      .createObservableCounter(METRIC_RUNS_AGGREGATED, { unit: '{run}', description: 'KVM_RUNs folded into aggregate spans' })
      .addCallback((r) => r.observe(o.spanStats().aggregatedRuns));
    meter
      .createObservableCounter(METRIC_RUNS_SAMPLED_OUT, { unit: '{run}', description: 'KVM_RUNs that got no span (sample mode)' })
      .addCallback((r) => r.observe(o.spanStats().sampledOutRuns));
  }

  /** Start the scrape endpoint (if any); resolves with its URL. */
  async start(): Promise<string | undefined> {
    return this.prometheus ? this.prometheus.listen() : undefined;
  }

  get exportErrors(): number {
    return this.exporter?.errors ?? 0;
  }

  write(r: TraceRecord): void {
    switch (r.type) {
      case 'ioctl':
        this.ioctl(r);
        break;
      case 'lost':
        this.lostSeen += r.count;
        this.lost.add(r.count);
        break;
      case 'summary':
        if (r.lost > this.lostSeen) {
          this.lost.add(r.lost - this.lostSeen);
          this.lostSeen = r.lost;
        }
        break;
      default:
        break;
    }
  }

  private ioctl(r: IoctlRecord): void {
    this.calls.add(1, {
      [A.ATTR_IOCTL_NAME]: r.name,
      [A.ATTR_IOCTL_ERRNO]: r.errno ?? ERRNO_NONE,
      [A.ATTR_FD_KIND]: r.fd_kind,
    });
    this.duration.record(r.latency_ns / 1e9, { [A.ATTR_IOCTL_NAME]: r.name });
    if (r.exit && !r.errno) {
      const a: Attributes = { [A.ATTR_PROCESS_PID]: r.pid, [A.ATTR_EXIT_REASON]: r.exit.reason };
      if (r.vm !== null) a[A.ATTR_VM] = r.vm;
      if (r.vcpu !== null) a[A.ATTR_VCPU] = r.vcpu;
      this.exits.add(1, a);
    }
    if (r.flags) {
      for (const f of r.flags) {
        if (f.misaligned) this.flags.add(1, { [A.ATTR_IOCTL_NAME]: r.name, [A.ATTR_BUFFER_FLAG]: 'misaligned', [A.ATTR_BUFFER_WHAT]: f.what });
        if (f.cacheline_cross) {
          this.flags.add(1, { [A.ATTR_IOCTL_NAME]: r.name, [A.ATTR_BUFFER_FLAG]: 'cacheline_cross', [A.ATTR_BUFFER_WHAT]: f.what });
        }
      }
    }
  }

  /** Final export (OTLP), then stop the scrape endpoint; bounded by `timeoutMs`, never rejects. */
  close(timeoutMs: number): Promise<void> {
    this.closed ??= (async () => {
      await withDeadline(this.provider.shutdown(), timeoutMs);
      await this.prometheus?.close();
    })();
    return this.closed;
  }
}
