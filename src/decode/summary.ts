/**
 * The end-of-trace summary (SummaryRecord): counts and latency p50/p99/max per ioctl name, exit reasons per
 * "pid/vcpu", the kvm_run addresses per vCPU, fds opened/closed/leaked, lost and unknown ioctls. It is a
 * RecordSink, so the capture session feeds it like any other sink. Latencies go into a log-linear histogram
 * per ioctl name (histogram.ts: 32 buckets per power of two, quantiles within 1/64 of the exact value), never
 * an array of samples: a run can have millions of KVM_RUNs.
 */
import { DurationHistogram } from './histogram.js';
import type { RecordSink } from './sink.js';
import type { KvmRunRecord, LatencyStats, SummaryRecord, TraceRecord } from './records.js';

interface PerIoctl {
  hist: DurationHistogram;
  errors: number;
  noEnter: number;
}

export interface SummaryMeta {
  strategy: string;
  /** Records lost in the kernel (failed ring reservations). */
  lost: number;
  duration_s: number;
  /** Raw events decoded (the decoder's count); default: trace records seen by this builder. */
  events?: number;
  /** Default: ioctl records whose name is KVM_UNKNOWN_…. */
  unknown_ioctls?: number;
  /** Extra fields to merge into the summary (e.g. rejected records, sink drops). */
  extra?: Record<string, unknown>;
}

export class SummaryBuilder implements RecordSink {
  private readonly ioctls = new Map<string, PerIoctl>();
  private readonly exits = new Map<string, Map<string, number>>();
  /** The last ioctl name's entry and the last pid/vcpu's exit counts: consecutive records mostly repeat them. */
  private lastName = '';
  private lastIoctl: PerIoctl | undefined;
  /** Each vCPU's exit counts by the vCPU id's low bits (direct-mapped: several vCPUs interleave). */
  private readonly exitSlots: Array<{ pid: number; vcpu: number | null; m: Map<string, number> } | undefined> = new Array(64).fill(undefined);
  private readonly runs = new Map<string, KvmRunRecord>();
  private readonly fds = { opened: 0, closed: 0, leaked: 0 };
  private records = 0;
  private unknown = 0;
  private copies = 0;

  write(r: TraceRecord): void {
    this.records++;
    switch (r.type) {
      case 'ioctl': {
        let s = this.lastIoctl;
        if (r.name !== this.lastName || s === undefined) {
          s = this.ioctls.get(r.name);
          if (!s) {
            s = { hist: new DurationHistogram(), errors: 0, noEnter: 0 };
            this.ioctls.set(r.name, s);
          }
          this.lastName = r.name;
          this.lastIoctl = s;
        }
        if (r.name.startsWith('KVM_UNKNOWN_')) this.unknown++;
        // A call seen without its enter has no latency: counted, kept out of the histogram. A latency that
        // is not a number ≥ 0 counts as 0, so that every call is in `count`.
        if (r.no_enter === true) s.noEnter++;
        else s.hist.add(r.latency_ns >= 0 && r.latency_ns < Infinity ? r.latency_ns : 0);
        if (r.ret < 0) s.errors++;
        if (r.exit) {
          const slot = (r.vcpu ?? 0) & 63;
          let e = this.exitSlots[slot];
          if (e === undefined || e.pid !== r.pid || e.vcpu !== r.vcpu) {
            const key = `${r.pid}/${r.vcpu ?? '?'}`;
            let m = this.exits.get(key);
            if (!m) this.exits.set(key, (m = new Map()));
            this.exitSlots[slot] = e = { pid: r.pid, vcpu: r.vcpu, m };
          }
          e.m.set(r.exit.reason, (e.m.get(r.exit.reason) ?? 0) + 1);
        }
        return;
      }
      case 'kvm_run':
        // Keyed by fd and addresses, not vcpu id: two VMs of one process both have a vCPU 0.
        this.runs.set(`${r.pid}/${r.fd}/${r.kernel_addr}/${r.user_addr}`, r);
        return;
      case 'fd':
        if (r.op === 'open') this.fds.opened++;
        else if (r.op === 'close') this.fds.closed++;
        else this.fds.leaked++;
        return;
      case 'copy':
        this.copies++;
        return;
      default:
        return;
    }
  }

  /** Nothing to flush: the summary is built on demand. */
  async close(): Promise<void> {}

  build(meta: SummaryMeta): SummaryRecord {
    const ioctls: Record<string, LatencyStats> = {};
    const total = (s: PerIoctl): number => s.hist.count + s.noEnter;
    const names = [...this.ioctls.keys()].sort((a, b) => total(this.ioctls.get(b)!) - total(this.ioctls.get(a)!) || a.localeCompare(b));
    for (const name of names) {
      const s = this.ioctls.get(name)!;
      ioctls[name] = {
        count: total(s),
        errors: s.errors,
        p50_ns: s.hist.quantile(0.5),
        p99_ns: s.hist.quantile(0.99),
        max_ns: s.hist.max,
      };
    }
    const exits: Record<string, Record<string, number>> = {};
    for (const [k, m] of this.exits) exits[k] = Object.fromEntries([...m].sort((a, b) => b[1] - a[1]));
    return {
      type: 'summary',
      strategy: meta.strategy,
      events: meta.events ?? this.records,
      lost: meta.lost,
      unknown_ioctls: meta.unknown_ioctls ?? this.unknown,
      duration_s: meta.duration_s,
      ioctls,
      exits,
      kvm_run: [...this.runs.values()],
      fds: { ...this.fds },
      copies: this.copies,
      ...meta.extra,
    };
  }
}
