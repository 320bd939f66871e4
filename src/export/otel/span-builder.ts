/**
 * Turns the record stream into spans: one trace per traced VM, plus one per process for its system ioctls.
 *
 *   kvm.vm  (root; pid + VM index; from KVM_CREATE_VM's entry to the VM fd's close)
 *   ├─ KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION, KVM_CREATE_VCPU, …   (VM-fd and device-fd ioctls)
 *   └─ kvm.vcpu  (one per vCPU; from KVM_CREATE_VCPU's entry to the vCPU fd's close)
 *      ├─ KVM_SET_SREGS, KVM_SET_REGS, …                                (every non-RUN vCPU ioctl)
 *      └─ KVM_RUN                                                      (aggregated / sampled / all)
 *
 *   kvm.process  (root; per pid; system-fd ioctls such as KVM_GET_API_VERSION, KVM_CHECK_EXTENSION,
 *                 KVM_GET_VCPU_MMAP_SIZE, KVM_GET_SUPPORTED_CPUID, and a failed KVM_CREATE_VM)
 *
 * Why a separate process trace for system ioctls: they are not about any one VM (a VMM probes /dev/kvm once
 * and then creates several VMs), and before the first KVM_CREATE_VM there is no VM trace to put them in. Each
 * VM root span carries a span link to its process span, so a tracing UI can hop between them.
 *
 * A VM's span ends at the later of its fd's close and its last vCPU's end (vCPU fds keep a VM alive in the
 * kernel); a VM or vCPU is its file, so dup copies of its fd keep it (one span) until the last one closes; a
 * leaked fd (still open at process exit) ends the span with kvm.end = "leak"; whatever is still open at the
 * end of the capture ends then with kvm.end = "capture_end". VMs and vCPUs first seen mid-life
 * (the capture attached late) get their span at the first ioctl that names them, marked kvm.seen_late.
 * `copy` records (kernel copies seen by kprobe/fentry, where the kernel allows those) are not exported: the
 * flags derived from them already travel on the ioctl records.
 *
 * The tree's nodes live in span-tree.ts, the KVM_RUN policy in run-spans.ts; this file routes records.
 */
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { Attributes, Context, Tracer } from '@opentelemetry/api';
import type { IoctlRecord, TraceRecord } from '../../decode/records.js';
import * as A from './attributes.js';
import type { MonotonicToEpoch } from './clock.js';
import type { RunSpanOptions } from './options.js';
import { enterOf } from './record-time.js';
import { RunSpans } from './run-spans.js';
import { SpanTree } from './span-tree.js';

export interface SpanBuilderStats {
  /** Spans ended (handed to the span processor). */
  spans: number;
  /** KVM_RUN records folded into aggregate spans. */
  aggregatedRuns: number;
  /** KVM_RUN records that got no span in sample mode. */
  sampledOutRuns: number;
}

export class SpanBuilder {
  private readonly tree: SpanTree;
  private readonly runs: RunSpans;
  readonly counts: SpanBuilderStats = { spans: 0, aggregatedRuns: 0, sampledOutRuns: 0 };
  /** Latest record time seen (CLOCK_MONOTONIC ns). */
  lastNs = 0;

  constructor(
    private readonly tracer: Tracer,
    private readonly clock: MonotonicToEpoch,
    runSpans: Required<RunSpanOptions>,
  ) {
    this.tree = new SpanTree(tracer, clock, () => this.counts.spans++);
    this.runs = new RunSpans(tracer, clock, runSpans, this.tree, this.counts, (r, parent, extra) => this.ioctlSpan(r, parent, extra));
  }

  write(r: TraceRecord): void {
    switch (r.type) {
      case 'ioctl':
        if (r.ts_ns > this.lastNs) this.lastNs = r.ts_ns;
        this.ioctl(r);
        break;
      case 'fd':
        if (r.ts_ns > this.lastNs) this.lastNs = r.ts_ns;
        this.tree.fd(r, (pid, vm, vcpu) => this.runs.flushVcpu(pid, vm, vcpu));
        break;
      case 'kvm_run':
        this.tree.kvmRun(r);
        break;
      default:
        // lost / copy / summary records carry nothing a span can show; the metrics count them.
        break;
    }
  }

  /** Close aggregate windows of vCPUs that stopped running (called from a timer). */
  flushIdle(): void {
    this.runs.flushIdle();
  }

  /** End of capture: emit open windows and end every open span at `endNs`. */
  finish(endNs: number): void {
    this.runs.flushAll();
    this.tree.finish(endNs);
  }

  private ioctl(r: IoctlRecord): void {
    const tree = this.tree;
    const p = tree.proc(r.pid);
    if (r.tid === r.pid && r.comm) p.exe = r.comm;

    if (r.name === 'KVM_CREATE_VM' && r.ret >= 0) {
      const index = r.vm ?? p.nextVm;
      const vm = tree.startVm(p, index, enterOf(r), false);
      vm.fd = r.ret;
      vm.span.setAttribute(A.ATTR_VM_FD, r.ret);
      tree.learnFd(r.pid, r.ret, { kind: 'vm', vm: index });
      this.ioctlSpan(r, vm.ctx);
      return;
    }

    const where = tree.locate(r);
    const enter = enterOf(r);
    if (where.kind === 'vcpu') {
      const v = tree.vcpu(p, where.vm, where.vcpu, enter);
      if (r.fd_kind === 'vcpu') {
        if (v.fd === undefined) v.fd = r.fd;
        tree.addFd(v, r.fd); // a dup copy is the same vCPU: one span, open until its last fd closes
      }
      if (r.name === 'KVM_RUN') this.runs.run(r, v);
      else this.ioctlSpan(r, v.ctx);
      return;
    }
    if (where.kind === 'vm') {
      const vm = tree.vm(p, where.vm, enter);
      if (r.fd_kind === 'vm') tree.addFd(vm, r.fd);
      if (r.name === 'KVM_CREATE_VCPU' && r.ret >= 0) {
        const id = vcpuIdOf(r);
        if (id !== undefined) {
          const v = tree.startVcpu(vm, id, enter, false);
          v.fd = r.ret;
          v.span.setAttribute(A.ATTR_VCPU_FD, r.ret);
          tree.learnFd(r.pid, r.ret, { kind: 'vcpu', vm: vm.index, vcpu: id });
        }
      }
      this.ioctlSpan(r, vm.ctx);
      return;
    }
    this.ioctlSpan(r, tree.procNode(p, r).ctx);
  }

  /** One span for one ioctl, under `parent`, with its buffer flags as events. */
  private ioctlSpan(r: IoctlRecord, parent: Context, extra?: Attributes): void {
    const a = A.ioctlAttributes(r);
    if (extra) Object.assign(a, extra);
    const start = this.clock.hrTime(enterOf(r));
    const span = this.tracer.startSpan(r.name, { kind: SpanKind.INTERNAL, startTime: start, attributes: a }, parent);
    if (r.flags) {
      for (const f of r.flags) {
        const name = A.flagEventName(f);
        if (name) span.addEvent(name, A.flagAttributes(f), start);
      }
    }
    if (r.errno) span.setStatus({ code: SpanStatusCode.ERROR, message: r.explain ? `${r.errno}: ${r.explain}` : r.errno });
    span.end(this.clock.hrTime(r.ts_ns));
    this.counts.spans++;
  }
}

/** The vCPU id KVM_CREATE_VCPU was asked for: its argument is the id itself (not a pointer). */
function vcpuIdOf(r: IoctlRecord): number | undefined {
  const args = r.args ?? {};
  for (const k of ['vcpu_id', 'id', 'vcpu']) {
    const v = args[k];
    if (typeof v === 'number' && Number.isInteger(v)) return v;
  }
  const n = Number.parseInt(r.arg, 16);
  if (Number.isSafeInteger(n) && n >= 0) return n;
  return r.vcpu ?? undefined;
}
