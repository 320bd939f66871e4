/**
 * VMM handling time, from full-capture records: per vCPU, the time from a KVM_RUN's return (its record's
 * ts_ns, the syscall exit) to the same vCPU's next KVM_RUN entry (that record's enter_ns), keyed by the exit
 * the first call came back with (exit-key.ts). It is what the VMM spent on that exit in user space —
 * emulating the device, plus whatever else the vCPU thread did before re-entering (other ioctls, signals,
 * being descheduled). Both ends are bpf_ktime_get_ns() at the syscall tracepoints, so the value is a
 * little longer than what the VMM measures around its own ioctl calls (by the syscall's return and entry
 * paths): test/vmm-handling.test.ts checks it against the reference guest's own clock reads.
 *
 * A vCPU is (pid, vCPU fd) while the fd is open; its record also names the VM index and vCPU id, so two VMs
 * in one process, both with a vCPU 0, stay apart, and a closed fd whose number is reused starts a new vCPU.
 * A close (or a process exit) ends the vCPU's pending return without a sample. Memory: per vCPU at most
 * MAX_KEYS_PER_VCPU sparse histograms (more distinct keys fold into "<reason> other").
 */
import type { IoctlRecord, TraceRecord, VcpuHandlingStats, VmmHandlingSummary } from '../decode/records.js';
import { DurationHistogram } from './duration-histogram.js';
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

export class VmmHandlingTracker {
  private readonly byFd = new Map<string, Open>();
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
    } else if (r.type === 'fd' && (r.op === 'close' || r.op === 'leak')) {
      this.forget(`${r.pid}/${r.fd}`);
    }
  }

  private forget(fdKey: string): void {
    this.recent.fill(undefined);
    const o = this.byFd.get(fdKey);
    if (!o) return;
    if (o.key) o.acc.pending++;
    this.byFd.delete(fdKey);
  }

  private vcpuAcc(r: IoctlRecord): VcpuAcc {
    const id = `${r.pid}/${r.vm ?? '?'}/${r.vcpu ?? '?'}/${r.fd}`;
    let a = this.vcpus.get(id);
    if (!a) {
      a = { pid: r.pid, comm: r.comm, vm: r.vm, vcpu: r.vcpu, fd: r.fd, total: new DurationHistogram(), keys: new Map(), pending: 0 };
      this.vcpus.set(id, a);
    }
    return a;
  }

  private run(r: IoctlRecord): void {
    const slot = r.fd & 63;
    const seen = this.recent[slot];
    let o = seen !== undefined && seen.pid === r.pid && seen.fd === r.fd ? seen.open : undefined;
    let fdKey: string | undefined;
    if (o === undefined) {
      fdKey = `${r.pid}/${r.fd}`;
      o = this.byFd.get(fdKey);
    }
    // The fd now names another vCPU (its close was not seen): the old one's return stays pending.
    if (o && ((r.vcpu !== null && o.acc.vcpu !== null && r.vcpu !== o.acc.vcpu) || (r.vm !== null && o.acc.vm !== null && r.vm !== o.acc.vm))) {
      this.forget((fdKey ??= `${r.pid}/${r.fd}`));
      o = undefined;
    }
    if (!o) {
      o = { acc: this.vcpuAcc(r), exitNs: 0, key: null, keyReason: undefined, keyA: undefined, keyB: undefined };
      this.byFd.set((fdKey ??= `${r.pid}/${r.fd}`), o);
    } else if (o.key) {
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
    for (const o of this.byFd.values()) if (o.key) waiting.set(o.acc, (waiting.get(o.acc) ?? 0) + 1);
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
