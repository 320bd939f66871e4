/**
 * The KVM_RUN policy of the span builder (options.ts describes the three modes): every run is folded into a
 * per-vCPU window span (aggregate), given a span one in N times and whenever it fails (sample), or given its
 * own span (all). Counts what was aggregated or sampled out, so the summary can say so.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { Attributes, Context, Tracer } from '@opentelemetry/api';
import type { IoctlRecord } from '../../decode/records.js';
import * as A from './attributes.js';
import type { MonotonicToEpoch } from './clock.js';
import type { RunSpanOptions } from './options.js';
import { RunAggregator, type RunWindow } from './run-aggregator.js';
import type { SpanTree, VcpuState } from './span-tree.js';

export interface RunCounts {
  spans: number;
  aggregatedRuns: number;
  sampledOutRuns: number;
}

export class RunSpans {
  private readonly aggregator?: RunAggregator;

  constructor(
    private readonly tracer: Tracer,
    private readonly clock: MonotonicToEpoch,
    private readonly opts: Required<RunSpanOptions>,
    private readonly tree: SpanTree,
    private readonly counts: RunCounts,
    /** Emits one ioctl span (the span builder's). */
    private readonly ioctlSpan: (r: IoctlRecord, parent: Context, extra?: Attributes) => void,
  ) {
    if (opts.mode === 'aggregate') this.aggregator = new RunAggregator(opts.windowMs, (w) => this.emitWindow(w));
  }

  /** One KVM_RUN on vCPU `v`. */
  run(r: IoctlRecord, v: VcpuState): void {
    v.runs++;
    if (this.aggregator) {
      this.counts.aggregatedRuns++;
      this.aggregator.add(r);
      return;
    }
    if (this.opts.mode === 'sample') {
      const take = (v.runs - 1) % this.opts.sampleEvery === 0 || r.ret < 0;
      if (!take) {
        this.counts.sampledOutRuns++;
        return;
      }
      this.ioctlSpan(r, v.ctx, { [A.ATTR_RUN_SAMPLE_EVERY]: this.opts.sampleEvery, [A.ATTR_RUN_SEQ]: v.runs });
      return;
    }
    this.ioctlSpan(r, v.ctx);
  }

  /** Close aggregate windows of vCPUs that stopped running (called from a timer). */
  flushIdle(): void {
    this.aggregator?.flushIdle();
  }

  /** Close the window of one vCPU (its fd closed). */
  flushVcpu(pid: number, vm: number, vcpu: number): void {
    this.aggregator?.flushVcpu(pid, vm, vcpu);
  }

  flushAll(): void {
    this.aggregator?.flushAll();
  }

  private emitWindow(w: RunWindow): void {
    const parent = this.tree.findVcpu(w.pid, w.vm, w.vcpu)?.ctx ?? ROOT_CONTEXT;
    const a: Attributes = A.threadAttributes(w);
    a[A.ATTR_IOCTL_NAME] = 'KVM_RUN';
    a[A.ATTR_IOCTL_CMD] = w.cmd;
    a[A.ATTR_FD] = w.fd;
    a[A.ATTR_FD_KIND] = 'vcpu';
    if (w.vm !== null) a[A.ATTR_VM] = w.vm;
    a[A.ATTR_VCPU] = w.vcpu;
    a[A.ATTR_RUN_AGGREGATED] = true;
    a[A.ATTR_RUN_WINDOW_MS] = this.opts.windowMs;
    a[A.ATTR_RUN_COUNT] = w.count;
    a[A.ATTR_RUN_ERRORS] = w.errors;
    a[A.ATTR_RUN_TIMED] = w.timed;
    a[A.ATTR_RUN_LATENCY_MIN_NS] = w.timed > 0 ? w.latencyMinNs : 0;
    a[A.ATTR_RUN_LATENCY_MAX_NS] = w.latencyMaxNs;
    a[A.ATTR_RUN_LATENCY_SUM_NS] = w.latencySumNs;
    for (const [reason, n] of w.exits) a[A.RUN_EXITS_PREFIX + reason] = n;
    for (const [errno, n] of w.errnos) a[A.RUN_ERRNOS_PREFIX + errno] = n;
    const span = this.tracer.startSpan(
      'KVM_RUN',
      { kind: SpanKind.INTERNAL, startTime: this.clock.hrTime(w.firstEnterNs), attributes: a },
      parent,
    );
    for (const f of w.flags) {
      const name = A.flagEventName(f);
      if (name) span.addEvent(name, A.flagAttributes(f), this.clock.hrTime(w.firstEnterNs));
    }
    if (w.errors === w.count && w.count > 0) span.setStatus({ code: SpanStatusCode.ERROR, message: [...w.errnos.keys()].join(',') });
    span.end(this.clock.hrTime(w.lastExitNs));
    this.counts.spans++;
  }
}
