/**
 * VMM handling time, from full-capture records: per vCPU, the time from a KVM_RUN's return (its record's
 * ts_ns, the syscall exit) to the same vCPU's next KVM_RUN entry (that record's enter_ns), keyed by the exit
 * the first call came back with (exit-key.ts). It is what the VMM spent on that exit in user space —
 * emulating the device, plus whatever else the vCPU thread did before re-entering (other ioctls, signals,
 * being descheduled). Both ends are bpf_ktime_get_ns() at the syscall tracepoints, so the value is a
 * little longer than what the VMM measures around its own ioctl calls (by the syscall's return and entry
 * paths): test/vmm-handling.test.ts checks it against the reference guest's own clock reads.
 *
 * A vCPU is (pid, VM index, vCPU id) — the file, not the fd number: a VMM that runs it through a dup copy
 * of its fd (dup, dup2, fcntl F_DUPFD) has one vCPU, and a return on one fd is timed to the re-entry on the
 * other. Two VMs in one process, both with a vCPU 0, stay apart. Only a record without VM index or vCPU id
 * (an fd the decoder could not place) is keyed by (pid, fd). The close of the vCPU's last fd (or a process
 * exit) ends its pending return without a sample; a closed fd whose number is reused names another vCPU. Memory: per vCPU at most
 * MAX_KEYS_PER_VCPU sparse histograms (more distinct keys fold into "<reason> other").
 */
import type { IoctlRecord, TraceRecord, VcpuHandlingStats, VmmHandlingSummary } from '../decode/records.js';
import { DurationHistogram } from '../decode/histogram.js';
import { exitKeyOf, foldedExitKey, MMIO_GRANULE, type ExitKey } from './exit-key.js';

export const MAX_KEYS_PER_VCPU = 64;

/** One timed re-entry (for tests and live consumers). */
export interface HandlingSample {
  pid: number;
  /** Thread of the re-entering KVM_RUN. */
  tid: number;
  fd: number;
  vm: number | null;
  vcpu: number | null;
  key: string;
  /** The exit reason behind the key ("IO", "error EINTR", …). */
  reason: string;
  /** ts_ns of the KVM_RUN that returned, and enter_ns of the next one. */
  exit_ns: number;
  reenter_ns: number;
  ns: number;
}

export interface VmmHandlingOptions {
  /** MMIO range size (a power of two); default MMIO_GRANULE (4096). */
  mmioGranule?: number;
  maxKeysPerVcpu?: number;
  onSample?: (s: HandlingSample) => void;
}

interface VcpuAcc {
  pid: number;
  comm: string;
  vm: number | null;
  vcpu: number | null;
  fd: number;
  total: DurationHistogram;
  keys: Map<string, { key: ExitKey; h: DurationHistogram }>;
  pending: number;
}

interface Open {
  acc: VcpuAcc;
  /** The last KVM_RUN's return, waiting for the next entry. */
  exitNs: number;
  key: ExitKey | null;
  /** What `key` was made from (exitKeyOf's inputs): an exit like the last one reuses its key. */
  keyReason: unknown;
  keyA: unknown;
  keyB: unknown;
}

/** Does `r`'s outcome give the key `o.key` was made from (exitKeyOf's inputs)? Then it is reused. */
function sameKeyInputs(o: Open, r: IoctlRecord): boolean {
  if (o.key === null) return false;
  const e = r.exit;
  if (!e) return o.keyReason === undefined && o.keyA === (r.ret < 0 ? (r.errno ?? r.ret) : 'ok');
  if (e.reason !== o.keyReason) return false;
  if (e.reason === 'IO') return o.keyA === e.direction && o.keyB === e.port;
  if (e.reason === 'MMIO') return o.keyA === e.phys_addr && o.keyB === e.is_write;
  return true;
}

function keepKeyInputs(o: Open, r: IoctlRecord): void {
  const e = r.exit;
  o.keyReason = e?.reason;
  o.keyA = !e ? (r.ret < 0 ? (r.errno ?? r.ret) : 'ok') : e.reason === 'IO' ? e.direction : e.reason === 'MMIO' ? e.phys_addr : undefined;
  o.keyB = !e ? undefined : e.reason === 'IO' ? e.port : e.reason === 'MMIO' ? e.is_write : undefined;
}

/** The vCPU a record names: (pid, VM, vCPU id), or (pid, fd) when the decoder could not place the fd. */
function vcpuKeyOf(pid: number, vm: number | null, vcpu: number | null, fd: number): string {
  return vm !== null && vcpu !== null ? `${pid}/${vm}/${vcpu}` : `${pid}/fd${fd}`;
}

export class VmmHandlingTracker {
  /** vCPU key -> its pending return. */
  private readonly byVcpu = new Map<string, Open>();
  /** "pid/fd" -> the vCPU key it names, and vCPU key -> its open fds (dup copies included). */
  private readonly fdVcpu = new Map<string, string>();
  private readonly vcpuFds = new Map<string, Set<number>>();
  /** Recent vCPU fds' entries by the fd's low bits (direct-mapped: no key string for a vCPU seen before). */
  private readonly recent: Array<{ pid: number; fd: number; open: Open } | undefined> = new Array(64).fill(undefined);
  private readonly vcpus = new Map<string, VcpuAcc>();
  private readonly granule: number;
  private readonly maxKeys: number;
  private untimed = 0;
  private overlapped = 0;

  constructor(private readonly opts: VmmHandlingOptions = {}) {
    this.granule = opts.mmioGranule ?? MMIO_GRANULE;
    if (!Number.isInteger(this.granule) || this.granule <= 0 || (this.granule & (this.granule - 1)) !== 0) {
      throw new RangeError(`MMIO granule must be a power of two, got ${this.granule}`);
    }
    this.maxKeys = opts.maxKeysPerVcpu ?? MAX_KEYS_PER_VCPU;
  }

  write(r: TraceRecord): void {
    if (r.type === 'ioctl') {
      if (r.name === 'KVM_RUN') this.run(r);
    } else if (r.type === 'fd') {
      if (r.op === 'close' || r.op === 'leak') this.closed(r.pid, r.fd, r.vm, r.vcpu);
      else if (r.fd_kind === 'vcpu' && r.vm !== null && r.vcpu !== null) this.learnFd(r.pid, r.fd, vcpuKeyOf(r.pid, r.vm, r.vcpu, r.fd));
    }
  }

  /** fd `fd` of `pid` names vCPU `key` (its creation, a dup copy, or a KVM_RUN on it). */
  private learnFd(pid: number, fd: number, key: string): void {
    const fdKey = `${pid}/${fd}`;
    const had = this.fdVcpu.get(fdKey);
    if (had === key) return;
    if (had !== undefined) this.dropFd(had, fd); // the number names another vCPU now (its close was not seen)
    this.fdVcpu.set(fdKey, key);
    let fds = this.vcpuFds.get(key);
    if (!fds) this.vcpuFds.set(key, (fds = new Set()));
    fds.add(fd);
  }

  private closed(pid: number, fd: number, vm: number | null, vcpu: number | null): void {
    this.recent.fill(undefined);
    const fdKey = `${pid}/${fd}`;
    const key = this.fdVcpu.get(fdKey) ?? vcpuKeyOf(pid, vm, vcpu, fd);
    this.fdVcpu.delete(fdKey);
    this.dropFd(key, fd);
  }

  /** `fd` no longer names vCPU `key`: when it was its last fd, the vCPU's return stays pending for good. */
  private dropFd(key: string, fd: number): void {
    const fds = this.vcpuFds.get(key);
    fds?.delete(fd);
    if (fds && fds.size > 0) return;
    this.vcpuFds.delete(key);
    const o = this.byVcpu.get(key);
    if (!o) return;
    if (o.key) o.acc.pending++;
    this.byVcpu.delete(key);
  }

  private vcpuAcc(r: IoctlRecord, key: string): VcpuAcc {
    let a = this.vcpus.get(key);
    if (!a) {
      a = { pid: r.pid, comm: r.comm, vm: r.vm, vcpu: r.vcpu, fd: r.fd, total: new DurationHistogram(), keys: new Map(), pending: 0 };
      this.vcpus.set(key, a);
    }
    return a;
  }

  private run(r: IoctlRecord): void {
    const slot = r.fd & 63;
    const seen = this.recent[slot];
    let o = seen !== undefined && seen.pid === r.pid && seen.fd === r.fd ? seen.open : undefined;
    // The fd now names another vCPU (its close was not seen): look it up afresh.
    if (o && ((r.vcpu !== null && o.acc.vcpu !== null && r.vcpu !== o.acc.vcpu) || (r.vm !== null && o.acc.vm !== null && r.vm !== o.acc.vm))) o = undefined;
    if (o === undefined) {
      const key = vcpuKeyOf(r.pid, r.vm, r.vcpu, r.fd);
      this.learnFd(r.pid, r.fd, key);
      o = this.byVcpu.get(key);
      if (!o) {
        o = { acc: this.vcpuAcc(r, key), exitNs: 0, key: null, keyReason: undefined, keyA: undefined, keyB: undefined };
        this.byVcpu.set(key, o);
      }
    }
    if (o.key) {
      if (r.no_enter === true) this.untimed++;
      else if (r.enter_ns < o.exitNs) this.overlapped++;
      else this.sample(o, r);
    }
    if (seen === undefined || seen.open !== o) this.recent[slot] = { pid: r.pid, fd: r.fd, open: o };
    o.exitNs = r.ts_ns;
    if (!sameKeyInputs(o, r)) {
      o.key = exitKeyOf(r, this.granule);
      keepKeyInputs(o, r);
    }
  }

  private sample(o: Open, r: IoctlRecord): void {
    const ns = r.enter_ns - o.exitNs;
    const a = o.acc;
    a.total.add(ns);
    let k = a.keys.get(o.key!.key);
    if (!k) {
      const key = a.keys.size < this.maxKeys ? o.key! : foldedExitKey(o.key!.reason);
      k = a.keys.get(key.key);
      if (!k) a.keys.set(key.key, (k = { key, h: new DurationHistogram() }));
    }
    k.h.add(ns);
    this.opts.onSample?.({ pid: r.pid, tid: r.tid, fd: r.fd, vm: a.vm, vcpu: a.vcpu, key: k.key.key, reason: k.key.reason, exit_ns: o.exitNs, reenter_ns: r.enter_ns, ns });
  }

  /** KVM_RUN calls seen so far (0: nothing to report). */
  get vcpuCount(): number {
    return this.vcpus.size;
  }

  /** The statistics so far; returns still waiting for a re-entry count as pending. */
  summary(): VmmHandlingSummary {
    const waiting = new Map<VcpuAcc, number>();
    for (const o of this.byVcpu.values()) if (o.key) waiting.set(o.acc, (waiting.get(o.acc) ?? 0) + 1);
    const vcpus: VcpuHandlingStats[] = [...this.vcpus.values()]
      .sort((a, b) => a.pid - b.pid || (a.vm ?? -1) - (b.vm ?? -1) || (a.vcpu ?? -1) - (b.vcpu ?? -1) || a.fd - b.fd)
      .map((a) => ({
        pid: a.pid,
        comm: a.comm,
        vm: a.vm,
        vcpu: a.vcpu,
        fd: a.fd,
        total: a.total.stats(),
        by_exit: [...a.keys.values()]
          .sort((x, y) => y.h.count - x.h.count || x.key.key.localeCompare(y.key.key))
          .map(({ key, h }) => ({ ...key, ...h.stats() })),
        pending: a.pending + (waiting.get(a) ?? 0),
      }));
    return { mmio_granule: this.granule, vcpus, untimed: this.untimed, overlapped: this.overlapped };
  }
}
