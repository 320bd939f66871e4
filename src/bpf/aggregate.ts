/**
 * Aggregate-only mode, user side of the kernel counters: the agg_run / agg_ioctls / agg_exits maps of
 * bpf/kvm_trace.bpf.c (struct kt_agg_ioctl, kt_agg_exits) summed over CPUs into plain numbers, and the
 * log-linear latency histogram read back as percentiles.
 *
 * The histogram's bucket rule mirrors lat_bucket() in the BPF program (KT_AGG_BUCKETS in kvm_trace.h):
 * exact below 4 ns, then 4 buckets per power of two. A percentile is the midpoint of the bucket holding
 * its rank, clamped to the exact maximum: an estimate within a quarter octave (about ±12 %), and the
 * summary says so.
 */
import { type BpfMapPtr, mapKeys, mapLookup, mapUpdate } from '../ffi/libbpf.js';
import { ioctlByName } from '../kvm/abi/ioctl-table.js';
import { AGG_EXITS, AGG_IOCTL, KT_AGG_BUCKETS, KT_AGG_REASONS, KT_AGG_VCPUS } from './event-layout.js';

/** One request number's counters, summed over CPUs. */
export interface AggCounters {
  count: number;
  errors: number;
  /** Calls seen without their enter (attached mid-call): counted, not in the histogram. */
  noEnter: number;
  sumNs: number;
  maxNs: number;
  hist: number[];
}

export interface KernelAggregate {
  /** Request number → counters (KVM_RUN included). */
  ioctls: Map<number, AggCounters>;
  /** Calls of request numbers that did not fit the kernel's hash (almost never): counted, unnamed. */
  overflow: AggCounters | undefined;
  /** vCPU slot (vcpu_id; the last slot also holds every larger id) → exit reason (capped) → count. */
  exits: Map<number, Map<number, number>>;
}

/** The last vCPU slot and exit-reason index also count every larger value. */
export const AGG_VCPU_CAP = KT_AGG_VCPUS - 1;
export const AGG_REASON_CAP = KT_AGG_REASONS - 1;

/** The histogram bucket of a latency in ns (what lat_bucket() computes in the kernel). */
export function aggBucket(ns: number): number {
  if (ns < 4) return Math.max(0, Math.floor(ns));
  const e = Math.floor(Math.log2(ns));
  // Math.log2 may round up just below a power of two: correct e against the value itself.
  const exp = 2 ** e > ns ? e - 1 : e;
  const b = (exp - 1) * 4 + (Math.floor(ns / 2 ** (exp - 2)) & 3);
  return Math.min(b, KT_AGG_BUCKETS - 1);
}

/** Smallest and largest latency (ns) of bucket `b`. */
export function aggBucketBounds(b: number): [number, number] {
  if (b < 4) return [b, b];
  const exp = Math.floor(b / 4) + 1;
  const w = 2 ** (exp - 2);
  const lo = (4 + (b % 4)) * w;
  return [lo, lo + w - 1];
}

/** Nearest-rank quantile (q in [0, 1]) from the histogram: bucket midpoint, clamped to the exact max. */
export function aggQuantile(c: AggCounters, q: number): number {
  const n = c.hist.reduce((a, b) => a + b, 0);
  if (n === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * n));
  let seen = 0;
  for (let b = 0; b < c.hist.length; b++) {
    seen += c.hist[b];
    if (seen >= rank) {
      const [lo, hi] = aggBucketBounds(b);
      return Math.min(c.maxNs, Math.round((lo + hi) / 2));
    }
  }
  return c.maxNs;
}

/** Sum a per-CPU kt_agg_ioctl value (ncpu copies, `stride` bytes apart); max is the max over CPUs. */
export function sumAggIoctl(value: Buffer, ncpu: number, stride = AGG_IOCTL.size): AggCounters {
  const c: AggCounters = { count: 0, errors: 0, noEnter: 0, sumNs: 0, maxNs: 0, hist: new Array<number>(KT_AGG_BUCKETS).fill(0) };
  const u = (off: number): number => Number(value.readBigUInt64LE(off));
  for (let cpu = 0; cpu < ncpu; cpu++) {
    const base = cpu * stride;
    c.count += u(base + AGG_IOCTL.count);
    c.errors += u(base + AGG_IOCTL.errors);
    c.noEnter += u(base + AGG_IOCTL.no_enter);
    c.sumNs += u(base + AGG_IOCTL.sum_ns);
    c.maxNs = Math.max(c.maxNs, u(base + AGG_IOCTL.max_ns));
    for (let b = 0; b < KT_AGG_BUCKETS; b++) c.hist[b] += u(base + AGG_IOCTL.hist + 8 * b);
  }
  return c;
}

export interface AggregateMaps {
  run: BpfMapPtr;
  ioctls: BpfMapPtr;
  exits: BpfMapPtr;
}

/** Per-CPU values are copied out 8-byte aligned per CPU (the kernel's round_up(value_size, 8)). */
const stride = (size: number): number => Math.ceil(size / 8) * 8;

/** After load, before attach: the overflow entry (key 0) the programs fall back to when the hash is full. */
export function prepareAggregateMaps(maps: AggregateMaps, ncpu: number): void {
  mapUpdate(maps.ioctls, Buffer.alloc(4), Buffer.alloc(stride(AGG_IOCTL.size) * ncpu));
}

/** KVM_RUN's counters live in the one-entry agg_run array, not in the hash. */
const KVM_RUN_CMD = ioctlByName('KVM_RUN').cmd;

/** Read and sum every counter the programs kept. */
export function readAggregate(maps: AggregateMaps, ncpu: number): KernelAggregate {
  const ioctls = new Map<number, AggCounters>();
  const istride = stride(AGG_IOCTL.size);
  const value = Buffer.alloc(istride * ncpu);
  const zero = Buffer.alloc(4);
  let overflow: AggCounters | undefined;
  if (mapLookup(maps.run, zero, value)) {
    const run = sumAggIoctl(value, ncpu, istride);
    if (run.count > 0) ioctls.set(KVM_RUN_CMD, run);
  }
  for (const key of mapKeys(maps.ioctls, 4)) {
    if (!mapLookup(maps.ioctls, key, value)) continue; // removed meanwhile (never, here)
    const c = sumAggIoctl(value, ncpu, istride);
    const cmd = key.readUInt32LE(0);
    if (cmd === 0) overflow = c.count > 0 ? c : undefined;
    else if (c.count > 0) ioctls.set(cmd, c);
  }
  const exits = new Map<number, Map<number, number>>();
  const xstride = stride(AGG_EXITS.size);
  const xvalue = Buffer.alloc(xstride * ncpu);
  const key = Buffer.alloc(4);
  for (let slot = 0; slot < KT_AGG_VCPUS; slot++) {
    key.writeUInt32LE(slot);
    if (!mapLookup(maps.exits, key, xvalue)) continue;
    let reasons: Map<number, number> | undefined;
    for (let r = 0; r < KT_AGG_REASONS; r++) {
      let n = 0;
      for (let cpu = 0; cpu < ncpu; cpu++) n += Number(xvalue.readBigUInt64LE(cpu * xstride + AGG_EXITS.reasons + 8 * r));
      if (n === 0) continue;
      reasons ??= new Map();
      reasons.set(r, n);
    }
    if (reasons) exits.set(slot, reasons);
  }
  return { ioctls, overflow, exits };
}
