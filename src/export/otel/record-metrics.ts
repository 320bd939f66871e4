/**
 * The metrics of a capture, counted from the record stream and handed to the SDK's metric readers at
 * collection time through its MetricProducer extension point (metrics.ts builds the readers). Instruments
 * and their Prometheus names are listed in the README ("OpenTelemetry"); their attributes in its one
 * attribute table.
 *
 * Why not the SDK's synchronous instruments: with a reader attached, Counter.add / Histogram.record cost
 * 1.5–2.5 µs each here (attribute hashing and per-reader storage), several per record — more than the whole
 * capture pipeline at 100 000 KVM_RUN/s. So the counts are kept in plain Maps keyed by a joined label string
 * (tens of ns per record); the SDK's readers still do the export, temporality (cumulative) and the
 * Prometheus translation.
 *
 * The histogram carries its unit in its name ("….seconds") on purpose: the OpenTelemetry Collector's
 * Prometheus exporters append a unit suffix unless the name already ends with it, while the Prometheus
 * exporter used here never does, so only that spelling gives the same series name both ways and one
 * dashboard serves both setups. Exits count successful KVM_RUNs by the exit reason they returned; lost
 * records come from `lost` records (topped up from the summary's total); decode errors and ring resyncs
 * from the summary (the only record that carries them), 0 until then, so their series exist from the start.
 */
import { ValueType } from '@opentelemetry/api';
import type { Attributes, HrTime } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import { emptyResource } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType } from '@opentelemetry/sdk-metrics';
import type { CollectionResult, HistogramMetricData, MetricData, MetricProducer, SumMetricData } from '@opentelemetry/sdk-metrics';
import type { HwExitStats, IoctlRecord, TraceRecord } from '../../decode/records.js';
import type { CaptureHealth } from '../../decode/sink.js';
import { exitReasonOf } from '../../analysis/exit-key.js';
import { VmmHandlingTracker, type HandlingSample } from '../../analysis/vmm-handling.js';
import * as A from './attributes.js';
import { packageVersion } from './util.js';

export const METRIC_IOCTL_CALLS = 'kvm.ioctl.calls';
export const METRIC_IOCTL_DURATION = 'kvm.ioctl.duration.seconds';
export const METRIC_EXITS = 'kvm.exits';
export const METRIC_BUFFER_FLAGS = 'kvm.buffer.flags';
export const METRIC_RECORDS_LOST = 'kvm.records.lost';
export const METRIC_DECODE_ERRORS = 'kvm.records.decode_errors';
export const METRIC_RING_RESYNCS = 'kvm.ring.resyncs';
export const METRIC_SPANS_DROPPED = 'kvm.trace.spans.dropped';
export const METRIC_RUNS_AGGREGATED = 'kvm.trace.runs.aggregated';
export const METRIC_RUNS_SAMPLED_OUT = 'kvm.trace.runs.sampled_out';
export const METRIC_VMM_HANDLING = 'kvm.vmm.handling.duration.seconds';
export const METRIC_RUN_DURATION = 'kvm.run.duration.seconds';
export const METRIC_HW_EXITS = 'kvm.exits.hardware';

/** Histogram buckets (seconds): a PIO exit here is ~8 µs, a KVM_CREATE_VM some ms, a HLT may block for long. */
export const DURATION_BUCKETS_S = [
  1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1, 10,
];

/** Span counters of the sink, shown as observable counters. */
export type SpanCounts = () => { dropped: number; aggregatedRuns: number; sampledOutRuns: number };

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

export class RecordMetrics implements MetricProducer {
  private readonly calls = new SumFamily(METRIC_IOCTL_CALLS, '{call}', 'KVM ioctls by name, error and fd kind');
  private readonly duration = new HistogramFamily(METRIC_IOCTL_DURATION, 's', 'KVM ioctl latency (syscall entry to exit)', DURATION_BUCKETS_S);
  private readonly exits = new SumFamily(METRIC_EXITS, '{exit}', 'KVM_RUN exits by reason and vCPU');
  private readonly flags = new SumFamily(
    METRIC_BUFFER_FLAGS,
    '{buffer}',
    'Copied ioctl buffers that are misaligned or cross more 64-byte cache lines than needed',
  );
  private readonly handlingTime = new HistogramFamily(
    METRIC_VMM_HANDLING,
    's',
    "VMM handling time: a KVM_RUN's return to the same vCPU's next KVM_RUN, by the exit it returned",
    DURATION_BUCKETS_S,
  );
  private readonly runTime = new HistogramFamily(METRIC_RUN_DURATION, 's', 'KVM_RUN latency by the exit reason it returned with', DURATION_BUCKETS_S);
  private readonly hwExits = new SumFamily(METRIC_HW_EXITS, '{exit}', 'In-kernel (hardware) exits by reason, where the kernel emits kvm:kvm_exit (attach --hw-exits; counted at the end of the capture)');
  /** Pairs each KVM_RUN return with the same vCPU's next entry (the capture's own rule, vmm-handling.ts). */
  private readonly handling = new VmmHandlingTracker({ onSample: (s) => this.handled(s) });
  private lost = 0;
  /** decode_errors and ring_resyncs: running totals from the capture every second (health()), the summary's at the end. */
  private decodeErrors = 0;
  private ringResyncs = 0;
  private readonly startTime: HrTime = hrTime();

  constructor(private readonly spanCounts: SpanCounts) {}

  private handled(s: HandlingSample): void {
    this.handlingTime.record(
      `${s.pid}\0${s.vm}\0${s.vcpu}\0${s.key}`,
      () => {
        const a: Attributes = { [A.ATTR_PROCESS_PID]: s.pid, [A.ATTR_EXIT_REASON]: s.reason, [A.ATTR_EXIT_KEY]: s.key };
        if (s.vm !== null) a[A.ATTR_VM] = s.vm;
        if (s.vcpu !== null) a[A.ATTR_VCPU] = s.vcpu;
        return a;
      },
      s.ns / 1e9,
    );
  }

  /** The summary's hardware-exit table: cumulative counts per reason (the kernel keeps them; read at the end). */
  private hardware(rows: HwExitStats[]): void {
    for (const r of rows) {
      const key = `${r.isa}\0${r.reason}`;
      const had = this.hwExits.series.get(key);
      if (had) had.value = r.samples;
      else this.hwExits.add(key, () => ({ [A.ATTR_EXIT_HW_REASON]: r.reason, [A.ATTR_ISA]: r.isa }), r.samples);
    }
  }

  /** The capture's running counts (never lowered: the summary may already have set them). */
  health(h: CaptureHealth): void {
    this.decodeErrors = Math.max(this.decodeErrors, countOf(h.decode_errors));
    this.ringResyncs = Math.max(this.ringResyncs, countOf(h.ring_resyncs));
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
        this.decodeErrors = Math.max(this.decodeErrors, countOf(r.decode_errors ?? r.rejected));
        this.ringResyncs = Math.max(this.ringResyncs, countOf(r.ring_resyncs));
        if (r.hw_exit_stats) this.hardware(r.hw_exit_stats);
        break;
      case 'fd':
        this.handling.write(r);
        break;
      default:
        break;
    }
  }

  private ioctl(r: IoctlRecord): void {
    // error.type only on failures (the semantic conventions' rule): successes are the series without it.
    this.calls.add(`${r.name}\0${r.errno ?? ''}\0${r.fd_kind}`, () => {
      const a: Attributes = { [A.ATTR_IOCTL_NAME]: r.name, [A.ATTR_FD_KIND]: r.fd_kind };
      if (r.errno) a[A.ATTR_ERROR_TYPE] = r.errno;
      return a;
    });
    // A call whose entry was not seen has no latency (its 0 would pull the percentiles down).
    if (!r.no_enter) this.duration.record(r.name, () => ({ [A.ATTR_IOCTL_NAME]: r.name }), r.latency_ns / 1e9);
    if (r.name === 'KVM_RUN') {
      this.handling.write(r);
      if (!r.no_enter) {
        const reason = exitReasonOf(r);
        this.runTime.record(reason, () => ({ [A.ATTR_EXIT_REASON]: reason }), r.latency_ns / 1e9);
      }
    }
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
    const histogram = (h: HistogramFamily): HistogramMetricData => ({
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
    });
    const spans = this.spanCounts();
    const metrics: MetricData[] = [
      sum(this.calls),
      histogram(this.duration),
      sum(this.exits),
      histogram(this.runTime),
      histogram(this.handlingTime),
      sum(this.hwExits),
      sum(this.flags),
      single(METRIC_RECORDS_LOST, '{record}', 'Records the ring buffer could not take', this.lost),
      single(METRIC_DECODE_ERRORS, '{record}', 'Records the decoder could not decode (too short, unknown type, or a stage threw on them)', this.decodeErrors),
      single(METRIC_RING_RESYNCS, '{resync}', 'Times the ring buffer was resynchronised after a corrupt or stuck record header', this.ringResyncs),
      single(METRIC_SPANS_DROPPED, '{span}', 'Spans that did not reach the collector', spans.dropped),
      single(METRIC_RUNS_AGGREGATED, '{run}', 'KVM_RUNs folded into aggregate spans', spans.aggregatedRuns),
      single(METRIC_RUNS_SAMPLED_OUT, '{run}', 'KVM_RUNs that got no span (sample mode)', spans.sampledOutRuns),
    ].filter((m) => m.dataPoints.length > 0);
    return {
      // The reader keeps the SDK's resource (NodeSDK's, with the detected attributes) and takes only the scope.
      resourceMetrics: { resource: emptyResource(), scopeMetrics: [{ scope: { name: 'kvm-trace', version: packageVersion() }, metrics }] },
      errors: [],
    };
  }
}

/** A summary count (an extra field, so typed unknown): a non-negative integer, else 0. */
function countOf(v: unknown): number {
  const n = Number(v ?? 0);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}
