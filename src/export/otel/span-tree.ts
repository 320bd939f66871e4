/**
 * The long-lived spans of the trace tree — process, VM, vCPU — and what the span builder learned about fds.
 * span-builder.ts explains the tree; this file keeps its nodes: when each starts (its creating ioctl, or the
 * first ioctl that names it when the capture attached late: kvm.seen_late), when it ends (its fd's close or
 * leak, a VM not before its last vCPU, or the capture's end), and the kvm_run addresses on vCPU spans.
 */
import { ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import type { Attributes, Context, Link, Span, Tracer } from '@opentelemetry/api';
import type { FdRecord, IoctlRecord, KvmRunRecord } from '../../decode/records.js';
import * as A from './attributes.js';
import type { MonotonicToEpoch } from './clock.js';
import { enterOf } from './record-time.js';

export interface Node {
  span: Span;
  ctx: Context;
  ended: boolean;
}

export interface VcpuState extends Node {
  vm: VmState;
  id: number;
  fd?: number;
  /** Runs seen on this vCPU (sample mode). */
  runs: number;
}

export interface VmState extends Node {
  pid: number;
  index: number;
  fd?: number;
  fdClosed?: { ns: number; reason: string };
  vcpus: Map<number, VcpuState>;
}

export interface ProcState {
  pid: number;
  /** Index the next KVM_CREATE_VM gets when the record does not say (per process, creation order). */
  nextVm: number;
  vms: Map<number, VmState>;
  proc?: Node & { fd?: number };
  exe?: string;
}

/** Where an ioctl belongs. */
export type Place = { kind: 'vcpu'; vm: number; vcpu: number } | { kind: 'vm'; vm: number } | { kind: 'process' };

const END_CLOSE = 'close';
const END_LEAK = 'leak';
const END_CAPTURE = 'capture_end';

export class SpanTree {
  private readonly procs = new Map<number, ProcState>();
  /** "pid:fd" -> where the fd belongs, learned from create ioctls and fd records. */
  private readonly fds = new Map<string, { kind: 'vm' | 'vcpu'; vm: number; vcpu?: number }>();

  constructor(
    private readonly tracer: Tracer,
    private readonly clock: MonotonicToEpoch,
    /** Called for every span this tree ends. */
    private readonly ended: () => void,
  ) {}

  proc(pid: number): ProcState {
    let p = this.procs.get(pid);
    if (!p) {
      p = { pid, nextVm: 0, vms: new Map() };
      this.procs.set(pid, p);
    }
    return p;
  }

  /** Remember that this fd is the VM / vCPU created by an ioctl. */
  learnFd(pid: number, fd: number, place: { kind: 'vm' | 'vcpu'; vm: number; vcpu?: number }): void {
    this.fds.set(`${pid}:${fd}`, place);
  }

  /** The process span for system ioctls, started (again) at this record if there is none open. */
  procNode(p: ProcState, r: IoctlRecord): Node {
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

  /** The VM's node, started now (marked seen late) if the capture never saw it created. */
  vm(p: ProcState, index: number, ns: number): VmState {
    return p.vms.get(index) ?? this.startVm(p, index, ns, true);
  }

  startVm(p: ProcState, index: number, ns: number, late: boolean): VmState {
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

  /** The vCPU's node (and its VM's), started now (marked seen late) if the capture never saw it created. */
  vcpu(p: ProcState, vmIndex: number, id: number, ns: number): VcpuState {
    const vm = this.vm(p, vmIndex, ns);
    return vm.vcpus.get(id) ?? this.startVcpu(vm, id, ns, true);
  }

  startVcpu(vm: VmState, id: number, ns: number, late: boolean): VcpuState {
    const old = vm.vcpus.get(id);
    if (old && !old.ended) return old;
    const a: Attributes = { [A.ATTR_PROCESS_PID]: vm.pid, [A.ATTR_VM]: vm.index, [A.ATTR_VCPU]: id };
    if (late) a[A.ATTR_SEEN_LATE] = true;
    const span = this.tracer.startSpan(A.SPAN_VCPU, { kind: SpanKind.INTERNAL, startTime: this.clock.hrTime(ns), attributes: a }, vm.ctx);
    const v: VcpuState = { span, ctx: trace.setSpan(vm.ctx, span), ended: false, vm, id, runs: 0 };
    vm.vcpus.set(id, v);
    return v;
  }

  /** The live vCPU node a window of runs belongs to, if any. */
  findVcpu(pid: number, vm: number | null, vcpu: number): VcpuState | undefined {
    return vm !== null ? this.procs.get(pid)?.vms.get(vm)?.vcpus.get(vcpu) : undefined;
  }

  private endNode(n: Node, ns: number, reason: string): void {
    if (n.ended) return;
    n.ended = true;
    n.span.setAttribute(A.ATTR_END_REASON, reason);
    n.span.end(this.clock.hrTime(ns));
    this.ended();
  }

  /** Which span an ioctl belongs under: the record's own vm/vcpu fields first, then what we learned of its fd. */
  locate(r: IoctlRecord): Place {
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

  /**
   * An fd record: an open only teaches where the fd belongs; a close or leak ends its node (a vCPU's open
   * run window first, through `closeRuns`).
   */
  fd(r: FdRecord, closeRuns: (pid: number, vm: number, vcpu: number) => void): void {
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
      closeRuns(r.pid, vmIndex, vcpuId);
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

  /** A kvm_run mapping: its user and kernel addresses go on the vCPU's span. */
  kvmRun(r: KvmRunRecord): void {
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

  /** End of capture: end every open node at `endNs` (a VM whose fd closed, at that close). */
  finish(endNs: number): void {
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
}
