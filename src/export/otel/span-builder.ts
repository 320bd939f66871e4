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
 * kernel); a leaked fd (still open at process exit) ends the span with kvm.end = "leak"; whatever is still
 * open at the end of the capture ends then with kvm.end = "capture_end". VMs and vCPUs first seen mid-life
 * (the capture attached late) get their span at the first ioctl that names them, marked kvm.seen_late.
 * `copy` records (kernel copies seen by kprobe/fentry, where the kernel allows those) are not exported: the
 * flags derived from them already travel on the ioctl records.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Attributes, Context, Link, Span, Tracer } from '@opentelemetry/api';
import type { FdRecord, IoctlRecord, KvmRunRecord, TraceRecord } from '../../decode/records.js';
import * as A from './attributes.js';
import type { MonotonicToEpoch } from './clock.js';
import type { RunSpanOptions } from './config.js';
import { RunAggregator, type RunWindow } from './run-aggregator.js';

interface Node {
  span: Span;
  ctx: Context;
  ended: boolean;
}

interface VcpuState extends Node {
  vm: VmState;
  id: number;
  fd?: number;
  /** Runs seen on this vCPU (sample mode). */
  runs: number;
}

interface VmState extends Node {
  pid: number;
  index: number;
  fd?: number;
  fdClosed?: { ns: number; reason: string };
  vcpus: Map<number, VcpuState>;
}

interface ProcState {
  pid: number;
  /** Index the next KVM_CREATE_VM gets when the record does not say (per process, creation order). */
  nextVm: number;
  vms: Map<number, VmState>;
  proc?: Node & { fd?: number };
  exe?: string;
}

export interface SpanBuilderStats {
  /** Spans ended (handed to the span processor). */
  spans: number;
  /** KVM_RUN records folded into aggregate spans. */
  aggregatedRuns: number;
  /** KVM_RUN records that got no span in sample mode. */
  sampledOutRuns: number;
}

const END_CLOSE = 'close';
const END_LEAK = 'leak';
const END_CAPTURE = 'capture_end';

export class SpanBuilder {
  private readonly procs = new Map<number, ProcState>();
  /** "pid:fd" -> where the fd belongs, learned from create ioctls and fd records. */
  private readonly fds = new Map<string, { kind: 'vm' | 'vcpu'; vm: number; vcpu?: number }>();
  private readonly aggregator?: RunAggregator;
  private readonly sampleEvery: number;
  private readonly mode: Required<RunSpanOptions>['mode'];
  private readonly windowMs: number;
  readonly counts: SpanBuilderStats = { spans: 0, aggregatedRuns: 0, sampledOutRuns: 0 };
  /** Latest record time seen (CLOCK_MONOTONIC ns). */
  lastNs = 0;

  constructor(
    private readonly tracer: Tracer,
    private readonly clock: MonotonicToEpoch,
    runSpans: Required<RunSpanOptions>,
  ) {
    this.mode = runSpans.mode;
    this.sampleEvery = runSpans.sampleEvery;
    this.windowMs = runSpans.windowMs;
    if (this.mode === 'aggregate') this.aggregator = new RunAggregator(runSpans.windowMs, (w) => this.emitWindow(w));
  }

  write(r: TraceRecord): void {
    switch (r.type) {
      case 'ioctl':
        if (r.ts_ns > this.lastNs) this.lastNs = r.ts_ns;
        this.ioctl(r);
        break;
      case 'fd':
        if (r.ts_ns > this.lastNs) this.lastNs = r.ts_ns;
        this.fd(r);
        break;
      case 'kvm_run':
        this.kvmRun(r);
        break;
      default:
        // lost / copy / summary records carry nothing a span can show; the metrics count them.
        break;
    }
  }

  /** Close aggregate windows of vCPUs that stopped running (called from a timer). */
  flushIdle(): void {
    this.aggregator?.flushIdle();
  }

  /** End of capture: emit open windows and end every open span at `endNs`. */
  finish(endNs: number): void {
    this.aggregator?.flushAll();
    for (const p of this.procs.values()) {
      for (const vm of p.vms.values()) {
        const vcpusOpen = [...vm.vcpus.values()].some((v) => !v.ended);
        for (const v of vm.vcpus.values()) this.endNode(v, endNs, END_CAPTURE);
        if (vm.fdClosed && !vcpusOpen) this.endNode(vm, vm.fdClosed.ns, vm.fdClosed.reason);
        else this.endNode(vm, endNs, END_CAPTURE);
      }
      if (p.proc) this.endNode(p.proc, endNs, END_CAPTURE);
    }
  }

  // ---- records ----

  private ioctl(r: IoctlRecord): void {
    const p = this.proc(r.pid);
    if (r.tid === r.pid && r.comm) p.exe = r.comm;

    if (r.name === 'KVM_CREATE_VM' && r.ret >= 0) {
      const index = r.vm ?? p.nextVm;
      const vm = this.startVm(p, index, enterOf(r), false);
      vm.fd = r.ret;
      vm.span.setAttribute(A.ATTR_VM_FD, r.ret);
      this.fds.set(`${r.pid}:${r.ret}`, { kind: 'vm', vm: index });
      this.ioctlSpan(r, vm.ctx);
      return;
    }

    const where = this.locate(r);
    const enter = enterOf(r);
    if (where.kind === 'vcpu') {
      const v = this.vcpu(p, where.vm, where.vcpu, enter);
      if (v.fd === undefined && r.fd_kind === 'vcpu') v.fd = r.fd;
      if (r.name === 'KVM_RUN') this.run(r, v);
      else this.ioctlSpan(r, v.ctx);
      return;
    }
    if (where.kind === 'vm') {
      const vm = this.vm(p, where.vm, enter);
      if (r.name === 'KVM_CREATE_VCPU' && r.ret >= 0) {
        const id = vcpuIdOf(r);
        if (id !== undefined) {
          const v = this.startVcpu(vm, id, enter, false);
          v.fd = r.ret;
          v.span.setAttribute(A.ATTR_VCPU_FD, r.ret);
          this.fds.set(`${r.pid}:${r.ret}`, { kind: 'vcpu', vm: vm.index, vcpu: id });
        }
      }
      this.ioctlSpan(r, vm.ctx);
      return;
    }
    this.ioctlSpan(r, this.procNode(p, r).ctx);
  }

  private fd(r: FdRecord): void {
    const p = this.proc(r.pid);
    const known = this.fds.get(`${r.pid}:${r.fd}`);
    const kind = r.fd_kind === 'vm' || r.fd_kind === 'vcpu' ? r.fd_kind : known?.kind;
    const vmIndex = r.vm ?? known?.vm ?? null;
    const vcpuId = r.vcpu ?? known?.vcpu ?? null;

    if (r.op === 'open') {
      // Only learn where the fd belongs: the span starts with the creating ioctl (whose entry is earlier
      // than this record), or with the first ioctl on the fd when the capture attached late.
      if (kind === 'vm' && vmIndex !== null) {
        this.fds.set(`${r.pid}:${r.fd}`, { kind: 'vm', vm: vmIndex });
        this.adoptVmIndex(p, r.fd, vmIndex);
      } else if (kind === 'vcpu' && vmIndex !== null && vcpuId !== null) {
        this.fds.set(`${r.pid}:${r.fd}`, { kind: 'vcpu', vm: vmIndex, vcpu: vcpuId });
      }
      return;
    }

    // close or leak
    const reason = r.op === 'leak' ? END_LEAK : END_CLOSE;
    this.fds.delete(`${r.pid}:${r.fd}`);
    if (kind === 'vcpu' && vmIndex !== null && vcpuId !== null) {
      const vm = p.vms.get(vmIndex);
      const v = vm?.vcpus.get(vcpuId);
      if (!vm || !v) return;
      this.aggregator?.flushVcpu(r.pid, vmIndex, vcpuId);
      this.endNode(v, r.ts_ns, reason);
      if (vm.fdClosed && [...vm.vcpus.values()].every((x) => x.ended)) this.endNode(vm, r.ts_ns, vm.fdClosed.reason);
    } else if (kind === 'vm' && vmIndex !== null) {
      const vm = p.vms.get(vmIndex);
      if (!vm || vm.ended) return;
      vm.fdClosed = { ns: r.ts_ns, reason };
      if ([...vm.vcpus.values()].every((x) => x.ended)) this.endNode(vm, r.ts_ns, reason);
    } else if (r.fd_kind === 'system' && p.proc && !p.proc.ended && (p.proc.fd === undefined || p.proc.fd === r.fd)) {
      this.endNode(p.proc, r.ts_ns, reason);
    }
  }

  /**
   * The decoder's open record names the index of the VM that KVM_CREATE_VM just made. It can differ from
   * the one guessed at the ioctl when VMs created before the capture were seeded from /proc (they take
   * indexes first): re-key the VM, whose root span is still open, to the decoder's index.
   */
  private adoptVmIndex(p: ProcState, fd: number, index: number): void {
    for (const [guess, vm] of p.vms) {
      if (vm.fd !== fd || vm.ended || guess === index) continue;
      if (p.vms.get(index)) return; // the index is taken by a VM we already track: keep both as they are
      p.vms.delete(guess);
      vm.index = index;
      vm.span.setAttribute(A.ATTR_VM, index);
      p.vms.set(index, vm);
      if (index >= p.nextVm) p.nextVm = index + 1;
      return;
    }
  }

  private kvmRun(r: KvmRunRecord): void {
    const p = this.procs.get(r.pid);
    if (!p) return;
    const known = this.fds.get(`${r.pid}:${r.fd}`);
    let v: VcpuState | undefined;
    if (known?.kind === 'vcpu') v = p.vms.get(known.vm)?.vcpus.get(known.vcpu ?? -1);
    if (!v) {
      // Fall back to the newest VM that has a live vCPU with this id.
      for (const vm of [...p.vms.values()].reverse()) {
        const c = vm.vcpus.get(r.vcpu);
        if (c && !c.ended) {
          v = c;
          break;
        }
      }
    }
    if (!v || v.ended) return;
    const a: Attributes = {};
    if (r.user_addr) a[A.ATTR_KVM_RUN_USER_ADDR] = r.user_addr;
    if (r.kernel_addr) a[A.ATTR_KVM_RUN_KERNEL_ADDR] = r.kernel_addr;
    if (r.mmap_size !== null) a[A.ATTR_KVM_RUN_MMAP_SIZE] = r.mmap_size;
    v.span.setAttributes(a);
  }

  // ---- KVM_RUN policy ----

  private run(r: IoctlRecord, v: VcpuState): void {
    v.runs++;
    if (this.aggregator) {
      this.counts.aggregatedRuns++;
      this.aggregator.add(r);
      return;
    }
    if (this.mode === 'sample') {
      const take = (v.runs - 1) % this.sampleEvery === 0 || r.ret < 0;
      if (!take) {
        this.counts.sampledOutRuns++;
        return;
      }
      this.ioctlSpan(r, v.ctx, { [A.ATTR_RUN_SAMPLE_EVERY]: this.sampleEvery, [A.ATTR_RUN_SEQ]: v.runs });
      return;
    }
    this.ioctlSpan(r, v.ctx);
  }

  private emitWindow(w: RunWindow): void {
    const p = this.proc(w.pid);
    const v = w.vm !== null ? p.vms.get(w.vm)?.vcpus.get(w.vcpu) : undefined;
    const parent = v?.ctx ?? ROOT_CONTEXT;
    const a: Attributes = A.threadAttributes(w);
    a[A.ATTR_IOCTL_NAME] = 'KVM_RUN';
    a[A.ATTR_IOCTL_CMD] = w.cmd;
    a[A.ATTR_FD] = w.fd;
    a[A.ATTR_FD_KIND] = 'vcpu';
    if (w.vm !== null) a[A.ATTR_VM] = w.vm;
    a[A.ATTR_VCPU] = w.vcpu;
    a[A.ATTR_RUN_AGGREGATED] = true;
    a[A.ATTR_RUN_WINDOW_MS] = this.windowMs;
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

  // ---- spans ----

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

  private proc(pid: number): ProcState {
    let p = this.procs.get(pid);
    if (!p) {
      p = { pid, nextVm: 0, vms: new Map() };
      this.procs.set(pid, p);
    }
    return p;
  }

  /** The process span for system ioctls, started (again) at this record if there is none open. */
  private procNode(p: ProcState, r: IoctlRecord): Node {
    if (p.proc && !p.proc.ended) return p.proc;
    const a: Attributes = { [A.ATTR_PROCESS_PID]: p.pid };
    if (p.exe) a[A.ATTR_PROCESS_EXECUTABLE_NAME] = p.exe;
    const span = this.tracer.startSpan(
      A.SPAN_PROCESS,
      { kind: SpanKind.INTERNAL, startTime: this.clock.hrTime(enterOf(r)), attributes: a, root: true },
      ROOT_CONTEXT,
    );
    p.proc = { span, ctx: trace.setSpan(ROOT_CONTEXT, span), ended: false, fd: r.fd_kind === 'system' ? r.fd : undefined };
    return p.proc;
  }

  private vm(p: ProcState, index: number, ns: number): VmState {
    return p.vms.get(index) ?? this.startVm(p, index, ns, true);
  }

  private startVm(p: ProcState, index: number, ns: number, late: boolean): VmState {
    const old = p.vms.get(index);
    if (old && !old.ended) return old;
    const a: Attributes = { [A.ATTR_PROCESS_PID]: p.pid, [A.ATTR_VM]: index };
    if (p.exe) a[A.ATTR_PROCESS_EXECUTABLE_NAME] = p.exe;
    if (late) a[A.ATTR_SEEN_LATE] = true;
    const links: Link[] = p.proc && !p.proc.ended ? [{ context: p.proc.span.spanContext() }] : [];
    const span = this.tracer.startSpan(
      A.SPAN_VM,
      { kind: SpanKind.INTERNAL, startTime: this.clock.hrTime(ns), attributes: a, links, root: true },
      ROOT_CONTEXT,
    );
    const vm: VmState = { span, ctx: trace.setSpan(ROOT_CONTEXT, span), ended: false, pid: p.pid, index, vcpus: new Map() };
    p.vms.set(index, vm);
    if (index >= p.nextVm) p.nextVm = index + 1;
    return vm;
  }

  private vcpu(p: ProcState, vmIndex: number, id: number, ns: number): VcpuState {
    const vm = this.vm(p, vmIndex, ns);
    return vm.vcpus.get(id) ?? this.startVcpu(vm, id, ns, true);
  }

  private startVcpu(vm: VmState, id: number, ns: number, late: boolean): VcpuState {
    const old = vm.vcpus.get(id);
    if (old && !old.ended) return old;
    const a: Attributes = { [A.ATTR_PROCESS_PID]: vm.pid, [A.ATTR_VM]: vm.index, [A.ATTR_VCPU]: id };
    if (late) a[A.ATTR_SEEN_LATE] = true;
    const span = this.tracer.startSpan(A.SPAN_VCPU, { kind: SpanKind.INTERNAL, startTime: this.clock.hrTime(ns), attributes: a }, vm.ctx);
    const v: VcpuState = { span, ctx: trace.setSpan(vm.ctx, span), ended: false, vm, id, runs: 0 };
    vm.vcpus.set(id, v);
    return v;
  }

  private endNode(n: Node, ns: number, reason: string): void {
    if (n.ended) return;
    n.ended = true;
    n.span.setAttribute(A.ATTR_END_REASON, reason);
    n.span.end(this.clock.hrTime(ns));
    this.counts.spans++;
  }

  /** Which span an ioctl belongs under: the record's own vm/vcpu fields first, then what we learned of its fd. */
  private locate(r: IoctlRecord): { kind: 'vcpu'; vm: number; vcpu: number } | { kind: 'vm'; vm: number } | { kind: 'process' } {
    if (r.fd_kind === 'system') return { kind: 'process' };
    const known = this.fds.get(`${r.pid}:${r.fd}`);
    const vm = r.vm ?? known?.vm ?? null;
    const vcpu = r.vcpu ?? known?.vcpu ?? null;
    if ((r.fd_kind === 'vcpu' || known?.kind === 'vcpu' || r.fd_kind === 'unknown') && vm !== null && vcpu !== null) {
      return { kind: 'vcpu', vm, vcpu };
    }
    if (vm !== null) return { kind: 'vm', vm };
    return { kind: 'process' };
  }
}

/**
 * When the ioctl entered. A record whose entry was not seen (tracing attached mid-call, `no_enter`) has
 * enter_ns 0; its span starts and ends at the exit rather than at boot time.
 */
export function enterOf(r: IoctlRecord): number {
  return r.no_enter || r.enter_ns <= 0 ? r.ts_ns : r.enter_ns;
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
