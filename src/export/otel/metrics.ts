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
 *
 * Why not the SDK's synchronous instruments: with a reader attached, Counter.add / Histogram.record cost
 * 1.5–2.5 µs each here (attribute hashing and per-reader storage), several per record — more than the whole
 * capture pipeline at 100 000 KVM_RUN/s. So the counts are kept in plain Maps keyed by a joined label string
 * (tens of ns per record) and handed to the SDK at collection time through its MetricProducer extension
 * point; the SDK's readers still do the export, temporality (cumulative) and the Prometheus translation.
 */
import { ValueType } from '@opentelemetry/api';
import type { Attributes, HrTime } from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import { ExportResultCode, hrTime } from '@opentelemetry/core';
import { OTLPMetricExporter as JsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import type { Resource } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import type {
  AggregationOption,
  CollectionResult,
  HistogramMetricData,
  IMetricReader,
  InstrumentType,
  MetricData,
  MetricProducer,
  PushMetricExporter,
  ResourceMetrics,
  SumMetricData,
} from '@opentelemetry/sdk-metrics';
import type { IoctlRecord, TraceRecord } from '../../decode/records.js';
import * as A from './attributes.js';
import type { OtlpProtocol } from './config.js';
import { PrometheusEndpoint } from './prometheus.js';
import { oneLineError, packageVersion, withDeadline } from './util.js';

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
        this.warn(
          'export',
          `kvm-trace: warning: OTLP export to ${this.url} failed (${oneLineError(result.error)}); ` +
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

interface Series<T> {
  attributes: Attributes;
  value: T;
}

interface HistogramValue {
  counts: number[];
  sum: number;
  count: number;
  min: number;
  max: number;
}

/** Cumulative sums keyed by a label string; attributes are built once per series. */
class SumFamily {
  readonly series = new Map<string, Series<number>>();
  constructor(readonly name: string, readonly unit: string, readonly description: string) {}

  add(key: string, attributes: () => Attributes, n = 1): void {
    const s = this.series.get(key);
    if (s) s.value += n;
    else this.series.set(key, { attributes: attributes(), value: n });
  }
}

/** Cumulative explicit-bucket histograms: bucket i counts values in (bounds[i-1], bounds[i]]. */
class HistogramFamily {
  readonly series = new Map<string, Series<HistogramValue>>();
  constructor(
    readonly name: string,
    readonly unit: string,
    readonly description: string,
    readonly bounds: number[],
  ) {}

  record(key: string, attributes: () => Attributes, v: number): void {
    let s = this.series.get(key);
    if (!s) {
      s = {
        attributes: attributes(),
        value: { counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0, min: Infinity, max: -Infinity },
      };
      this.series.set(key, s);
    }
    const h = s.value;
    const b = this.bounds;
    let lo = 0;
    let hi = b.length; // first bound >= v, or b.length for the overflow bucket
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (b[mid] < v) lo = mid + 1;
      else hi = mid;
    }
    h.counts[lo]++;
    h.sum += v;
    h.count++;
    if (v < h.min) h.min = v;
    if (v > h.max) h.max = v;
  }
}

export class MetricsPipeline implements MetricProducer {
  private readonly provider: MeterProvider;
  private readonly calls = new SumFamily(METRIC_IOCTL_CALLS, '{call}', 'KVM ioctls by name, errno and fd kind');
  private readonly duration = new HistogramFamily(
    METRIC_IOCTL_DURATION,
    's',
    'KVM ioctl latency (syscall entry to exit)',
    DURATION_BUCKETS_S,
  );
  private readonly exits = new SumFamily(METRIC_EXITS, '{exit}', 'KVM_RUN exits by reason and vCPU');
  private readonly flags = new SumFamily(
    METRIC_BUFFER_FLAGS,
    '{buffer}',
    'Copied ioctl buffers that are misaligned or cross more 64-byte cache lines than needed',
  );
  private lost = 0;
  private readonly startTime: HrTime = hrTime();
  private readonly exporter?: CountingMetricExporter;
  readonly prometheus?: PrometheusEndpoint;
  private closed?: Promise<void>;

  constructor(private readonly o: MetricsPipelineOptions) {
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
          metricProducers: [this],
        }),
      );
    }
    if (o.prometheus) {
      this.prometheus = new PrometheusEndpoint(o.prometheus.host, o.prometheus.port, [this]);
      readers.push(this.prometheus.reader);
    }
    // The provider has no instruments of its own: it carries the resource and drives the readers.
    this.provider = new MeterProvider({ resource: o.resource, readers });
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
        this.lost += r.count;
        break;
      case 'summary':
        if (r.lost > this.lost) this.lost = r.lost;
        break;
      default:
        break;
    }
  }

  private ioctl(r: IoctlRecord): void {
    const errno = r.errno ?? ERRNO_NONE;
    this.calls.add(`${r.name}\0${errno}\0${r.fd_kind}`, () => ({
      [A.ATTR_IOCTL_NAME]: r.name,
      [A.ATTR_IOCTL_ERRNO]: errno,
      [A.ATTR_FD_KIND]: r.fd_kind,
    }));
    // A call whose entry was not seen has no latency (its 0 would pull the percentiles down).
    if (!r.no_enter) this.duration.record(r.name, () => ({ [A.ATTR_IOCTL_NAME]: r.name }), r.latency_ns / 1e9);
    if (r.exit && !r.errno) {
      const exit = r.exit;
      this.exits.add(`${r.pid}\0${r.vm}\0${r.vcpu}\0${exit.reason}`, () => {
        const a: Attributes = { [A.ATTR_PROCESS_PID]: r.pid, [A.ATTR_EXIT_REASON]: exit.reason };
        if (r.vm !== null) a[A.ATTR_VM] = r.vm;
        if (r.vcpu !== null) a[A.ATTR_VCPU] = r.vcpu;
        return a;
      });
    }
    if (r.flags) {
      for (const f of r.flags) {
        for (const [on, flag] of [
          [f.misaligned, 'misaligned'],
          [f.cacheline_cross, 'cacheline_cross'],
        ] as const) {
          if (!on) continue;
          this.flags.add(`${r.name}\0${flag}\0${f.what}`, () => ({
            [A.ATTR_IOCTL_NAME]: r.name,
            [A.ATTR_BUFFER_FLAG]: flag,
            [A.ATTR_BUFFER_WHAT]: f.what,
          }));
        }
      }
    }
  }

  /** MetricProducer: a snapshot of every family as cumulative data, taken by each reader's collection. */
  async collect(): Promise<CollectionResult> {
    const endTime = hrTime();
    const startTime = this.startTime;
    const sum = (f: SumFamily): SumMetricData => ({
      descriptor: { name: f.name, unit: f.unit, description: f.description, valueType: ValueType.INT },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.SUM,
      isMonotonic: true,
      dataPoints: [...f.series.values()].map((s) => ({ startTime, endTime, attributes: s.attributes, value: s.value })),
    });
    const single = (name: string, unit: string, description: string, value: number): SumMetricData => ({
      descriptor: { name, unit, description, valueType: ValueType.INT },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.SUM,
      isMonotonic: true,
      dataPoints: [{ startTime, endTime, attributes: {}, value }],
    });
    const h = this.duration;
    const histogram: HistogramMetricData = {
      descriptor: { name: h.name, unit: h.unit, description: h.description, valueType: ValueType.DOUBLE },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: [...h.series.values()].map((s) => ({
        startTime,
        endTime,
        attributes: s.attributes,
        value: {
          buckets: { boundaries: h.bounds.slice(), counts: s.value.counts.slice() },
          sum: s.value.sum,
          count: s.value.count,
          min: s.value.min,
          max: s.value.max,
        },
      })),
    };
    const spans = this.o.spanStats();
    const metrics: MetricData[] = [
      sum(this.calls),
      histogram,
      sum(this.exits),
      sum(this.flags),
      single(METRIC_RECORDS_LOST, '{record}', 'Records the ring buffer could not take', this.lost),
      single(METRIC_SPANS_DROPPED, '{span}', 'Spans that did not reach the collector', spans.dropped),
      single(METRIC_RUNS_AGGREGATED, '{run}', 'KVM_RUNs folded into aggregate spans', spans.aggregatedRuns),
      single(METRIC_RUNS_SAMPLED_OUT, '{run}', 'KVM_RUNs that got no span (sample mode)', spans.sampledOutRuns),
    ].filter((m) => m.dataPoints.length > 0);
    return {
      resourceMetrics: {
        resource: this.o.resource,
        scopeMetrics: [{ scope: { name: 'kvm-trace', version: packageVersion() }, metrics }],
      },
      errors: [],
    };
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
