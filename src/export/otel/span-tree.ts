/**
 * The long-lived spans of the trace tree — process, VM, vCPU — and what the span builder learned about fds.
 * span-builder.ts explains the tree; this file keeps its nodes: when each starts (its creating ioctl, or the
 * first ioctl that names it when the capture attached late: kvm.seen_late), when it ends (the close or leak
 * of its last fd, a VM not before its last vCPU, or the capture's end), and the kvm_run addresses on vCPU
 * spans.
 *
 * A VM or vCPU is the file, not the fd number: dup, dup2, dup3 and fcntl(F_DUPFD*) copies (fd records with
 * via "dup") name the same node, and only the close of its last fd ends it — a VMM that runs a vCPU through
 * a copy shows one vCPU.
 *
 * The kvm_run addresses can come after the vCPU's last fd closed: the decoder reports a kvm_run it could only
 * half join (the mapping through one fd, KVM_RUN through another, or never both) when the process exits or
 * the capture ends. A vCPU that ran without both addresses known therefore has its span ended — at its close
 * time — only when the addresses come or the capture ends, so they are on it whenever the capture knows them.
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

/** A VM or vCPU node: its open fds (the original and its dup copies). */
interface FileNode extends Node {
  fds: Set<number>;
}

export interface VcpuState extends FileNode {
  vm: VmState;
  id: number;
  fd?: number;
  /** Runs seen on this vCPU (sample mode). */
  runs: number;
  /** Every fd that ever named this vCPU (a late kvm_run record names one of them). */
  fdsSeen: Set<number>;
  /** The kvm_run addresses known so far. */
  kvmRun: Attributes;
  /** Closed, but the span waits for its kvm_run addresses (module comment). */
  pendingEnd?: { ns: number; reason: string };
}

export interface VmState extends FileNode {
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

  /** Remember that this fd is the VM / vCPU created by an ioctl (or a copy of one): it keeps the node open. */
  learnFd(pid: number, fd: number, place: { kind: 'vm' | 'vcpu'; vm: number; vcpu?: number }): void {
    const key = `${pid}:${fd}`;
    const old = this.fds.get(key);
    // A number reused without its close seen: the old node no longer has it.
    if (old && (old.kind !== place.kind || old.vm !== place.vm || old.vcpu !== place.vcpu)) this.nodeOf(pid, old)?.fds.delete(fd);
    this.fds.set(key, place);
    const n = this.nodeOf(pid, place);
    if (n && !n.ended) this.addFd(n, fd);
  }

  /** `fd` names node `n` (a vCPU ioctl on it, or one of the ways learnFd learns it). */
  addFd(n: VmState | VcpuState, fd: number): void {
    n.fds.add(fd);
    if ('fdsSeen' in n) n.fdsSeen.add(fd);
  }

  private nodeOf(pid: number, place: { kind: 'vm' | 'vcpu'; vm: number; vcpu?: number }): VmState | VcpuState | undefined {
    const vm = this.procs.get(pid)?.vms.get(place.vm);
    return place.kind === 'vm' ? vm : vm?.vcpus.get(place.vcpu ?? -1);
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
    const vm: VmState = { span, ctx: trace.setSpan(ROOT_CONTEXT, span), ended: false, pid: p.pid, index, vcpus: new Map(), fds: new Set() };
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
    const v: VcpuState = { span, ctx: trace.setSpan(vm.ctx, span), ended: false, vm, id, runs: 0, fds: new Set(), fdsSeen: new Set(), kvmRun: {} };
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
    if ('kvmRun' in n && waitsForKvmRun(n as VcpuState)) {
      (n as VcpuState).pendingEnd = { ns, reason };
      return;
    }
    this.endSpan(n, ns, reason);
  }

  private endSpan(n: Node, ns: number, reason: string): void {
    n.span.setAttribute(A.ATTR_END_REASON, reason);
    n.span.end(this.clock.hrTime(ns));
    this.ended();
  }

  /** A closed vCPU's span, held for its kvm_run addresses, ends now (at its close time). */
  private endPending(v: VcpuState): void {
    const e = v.pendingEnd;
    if (!e) return;
    v.pendingEnd = undefined;
    this.endSpan(v, e.ns, e.reason);
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
   * An fd record: an open only teaches where the fd belongs (a dup copy keeps its VM / vCPU open); a close
   * or leak ends its node when it was the node's last fd (a vCPU's open run window first, through `closeRuns`).
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
        if (r.via !== 'dup') this.adoptVmIndex(p, r.fd, vmIndex);
        this.learnFd(r.pid, r.fd, { kind: 'vm', vm: vmIndex });
      } else if (kind === 'vcpu' && vmIndex !== null && vcpuId !== null) {
        this.learnFd(r.pid, r.fd, { kind: 'vcpu', vm: vmIndex, vcpu: vcpuId });
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
      v.fds.delete(r.fd);
      if (v.fds.size > 0) return; // a copy still names this vCPU
      closeRuns(r.pid, vmIndex, vcpuId);
      this.endNode(v, r.ts_ns, reason);
      if (vm.fdClosed && [...vm.vcpus.values()].every((x) => x.ended)) this.endNode(vm, r.ts_ns, vm.fdClosed.reason);
    } else if (kind === 'vm' && vmIndex !== null) {
      const vm = p.vms.get(vmIndex);
      if (!vm || vm.ended) return;
      vm.fds.delete(r.fd);
      if (vm.fds.size > 0) return;
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

  /**
   * A kvm_run mapping: its user and kernel addresses go on the vCPU's span — also when it comes after the
   * vCPU's last fd closed (the span waited for it), and in two halves (each names its own fd).
   */
  kvmRun(r: KvmRunRecord): void {
    const p = this.procs.get(r.pid);
    if (!p) return;
    const v = this.vcpuOfRun(p, r);
    if (!v || (v.ended && !v.pendingEnd)) return;
    const a = v.kvmRun;
    if (r.user_addr) a[A.ATTR_KVM_RUN_USER_ADDR] = r.user_addr;
    if (r.kernel_addr) a[A.ATTR_KVM_RUN_KERNEL_ADDR] = r.kernel_addr;
    if (r.mmap_size !== null) a[A.ATTR_KVM_RUN_MMAP_SIZE] = r.mmap_size;
    v.span.setAttributes(a);
    if (v.pendingEnd && !waitsForKvmRun(v)) this.endPending(v);
  }

  /** The vCPU a kvm_run record is about: its fd's, live or closed; else the newest live vCPU with its id. */
  private vcpuOfRun(p: ProcState, r: KvmRunRecord): VcpuState | undefined {
    const known = this.fds.get(`${r.pid}:${r.fd}`);
    if (known?.kind === 'vcpu') {
      const v = p.vms.get(known.vm)?.vcpus.get(known.vcpu ?? -1);
      if (v) return v;
    }
    const vms = [...p.vms.values()].reverse();
    for (const vm of vms) {
      const c = vm.vcpus.get(r.vcpu);
      if (c && c.fdsSeen.has(r.fd) && (!c.ended || c.pendingEnd)) return c;
    }
    for (const vm of vms) {
      const c = vm.vcpus.get(r.vcpu);
      if (c && !c.ended) return c;
    }
    return undefined;
  }

  /** End of capture: end every open node at `endNs` (a VM whose fd closed, at that close). */
  finish(endNs: number): void {
    for (const p of this.procs.values()) {
      for (const vm of p.vms.values()) {
        const vcpusOpen = [...vm.vcpus.values()].some((v) => !v.ended);
        for (const v of vm.vcpus.values()) {
          this.endNode(v, endNs, END_CAPTURE);
          this.endPending(v); // no kvm_run record comes any more
        }
        if (vm.fdClosed && !vcpusOpen) this.endNode(vm, vm.fdClosed.ns, vm.fdClosed.reason);
        else this.endNode(vm, endNs, END_CAPTURE);
      }
      if (p.proc) this.endNode(p.proc, endNs, END_CAPTURE);
    }
  }
}

/**
 * Must a closed vCPU's span wait for its kvm_run addresses? When it ran (the decoder knows the kernel address
 * then, and reports it at the latest when the process exits) or one address came, but not both yet. A vCPU
 * never run and never reported has nothing coming for certain: it ends at once.
 */
function waitsForKvmRun(v: VcpuState): boolean {
  const a = v.kvmRun;
  const user = a[A.ATTR_KVM_RUN_USER_ADDR] !== undefined;
  const kernel = a[A.ATTR_KVM_RUN_KERNEL_ADDR] !== undefined;
  return !(user && kernel) && (v.runs > 0 || user || kernel);
}
