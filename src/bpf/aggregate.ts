/**
 * Aggregate-only mode, user side of the kernel counters: the agg_* maps of bpf/kt_maps.bpf.h (struct kt_agg_*
 * of bpf/kvm_trace.h) summed over CPUs into plain numbers — per process and request, per process / VM / vCPU
 * (KVM_RUN latency, exit reasons, hardware-exit totals), VMM handling time per vCPU and exit key, hardware
 * exits per vCPU and reason, and which process created each VM when.
 *
 * The latency histograms are read as the kernel's counts (KT_AGG_BUCKETS of them, in lat_bucket()'s rule:
 * exact below 4 ns, then 4 buckets per power of two); src/decode/histogram.ts holds that rule on the user
 * side (kernelBucket) and turns the counts into percentiles (kernelQuantile).
 */
import { type BpfMapPtr, mapKeys, mapLookup, mapUpdate } from '../ffi/libbpf.js';
import {
  AGG_HIST,
  AGG_IOCTL,
  AGG_IOCTL_KEY,
  AGG_VCPU,
  AGG_VCPU_KEY,
  AGG_VM,
  HANDLING_KEY,
  HW_KEY,
  KT_AGG_BUCKETS,
  KT_AGG_REASONS,
} from './event-layout.js';

/** One request's (or one vCPU's KVM_RUN) counters, summed over CPUs. */
export interface AggCounters {
  count: number;
  errors: number;
  /** Calls seen without their enter (attached mid-call): counted, not in the histogram. */
  noEnter: number;
  sumNs: number;
  maxNs: number;
  hist: number[];
}

/** A duration histogram (kt_agg_hist) summed over CPUs; minNs exact (Infinity when empty), maxNs exact. */
export interface AggHist {
  count: number;
  sumNs: number;
  minNs: number;
  maxNs: number;
  hist: number[];
}

/** A vCPU as the kernel keys it: process, VM (struct kvm *, "0x…"), vCPU id (-1: not resolved). */
export interface AggVcpuKey {
  tgid: number;
  vcpuId: number;
  kvm: string;
}

/** Hardware-exit totals of one vCPU's KVM_RUNs that had the hooks (kt_agg_vcpu.hw_*). */
export interface AggHwTotals {
  runs: number;
  exits: number;
  maxExits: number;
  guestNs: number;
  runNs: number;
}

export interface AggVcpu {
  key: AggVcpuKey;
  run: AggCounters;
  /** kvm_run.exit_reason (the last index also counts every larger one) → count. */
  reasons: Map<number, number>;
  hw: AggHwTotals;
}

/** struct kt_exit_key: what a KVM_RUN came back with (kind: KT_XK_*). */
export interface AggExitKey {
  kind: number;
  reason: number;
  port: number;
  dir: number;
  addr: bigint;
}

export interface AggHandling {
  vcpu: AggVcpuKey;
  exit: AggExitKey;
  hist: AggHist;
}

export interface AggHw {
  vcpu: AggVcpuKey;
  isa: number;
  reason: number;
  hist: AggHist;
}

export interface AggVm {
  kvm: string;
  tgid: number;
  fd: number;
  createdNs: number;
}

export interface KernelAggregate {
  /** Every KVM ioctl but KVM_RUN: tgid → request number → counters. */
  ioctls: Map<number, Map<number, AggCounters>>;
  /** Calls of (process, request) pairs that did not fit the kernel's hash (almost never): counted, unnamed. */
  ioctlOverflow: AggCounters | undefined;
  /** KVM_RUN per process / VM / vCPU. */
  vcpus: AggVcpu[];
  /** KVM_RUNs of vCPUs that did not fit the kernel's hash. */
  vcpuOverflow: AggVcpu | undefined;
  handling: AggHandling[];
  handlingOverflow: AggHist | undefined;
  hw: AggHw[];
  hwOverflow: AggHist | undefined;
  vms: AggVm[];
}

/** The last exit-reason index also counts every larger value. */
export const AGG_REASON_CAP = KT_AGG_REASONS - 1;

/** An empty counter set / histogram, and sums of two. */
export const emptyCounters = (): AggCounters => ({ count: 0, errors: 0, noEnter: 0, sumNs: 0, maxNs: 0, hist: new Array<number>(KT_AGG_BUCKETS).fill(0) });
export const emptyHist = (): AggHist => ({ count: 0, sumNs: 0, minNs: Infinity, maxNs: 0, hist: new Array<number>(KT_AGG_BUCKETS).fill(0) });

export function mergeCounters(a: AggCounters, b: AggCounters): AggCounters {
  return {
    count: a.count + b.count,
    errors: a.errors + b.errors,
    noEnter: a.noEnter + b.noEnter,
    sumNs: a.sumNs + b.sumNs,
    maxNs: Math.max(a.maxNs, b.maxNs),
    hist: a.hist.map((n, i) => n + b.hist[i]),
  };
}

export function mergeHist(a: AggHist, b: AggHist): AggHist {
  return { count: a.count + b.count, sumNs: a.sumNs + b.sumNs, minNs: Math.min(a.minNs, b.minNs), maxNs: Math.max(a.maxNs, b.maxNs), hist: a.hist.map((n, i) => n + b.hist[i]) };
}

/** Per-CPU values are copied out 8-byte aligned per CPU (the kernel's round_up(value_size, 8)). */
const stride = (size: number): number => Math.ceil(size / 8) * 8;
const u64 = (b: Buffer, off: number): number => Number(b.readBigUInt64LE(off));

/** Sum a per-CPU kt_agg_ioctl value found `at` bytes into each CPU's copy (`stride` bytes apart). */
export function sumAggIoctl(value: Buffer, ncpu: number, stride = AGG_IOCTL.size, at = 0): AggCounters {
  const c = emptyCounters();
  for (let cpu = 0; cpu < ncpu; cpu++) {
    const base = cpu * stride + at;
    c.count += u64(value, base + AGG_IOCTL.count);
    c.errors += u64(value, base + AGG_IOCTL.errors);
    c.noEnter += u64(value, base + AGG_IOCTL.no_enter);
    c.sumNs += u64(value, base + AGG_IOCTL.sum_ns);
    c.maxNs = Math.max(c.maxNs, u64(value, base + AGG_IOCTL.max_ns));
    for (let b = 0; b < KT_AGG_BUCKETS; b++) c.hist[b] += u64(value, base + AGG_IOCTL.hist + 8 * b);
  }
  return c;
}

function sumHist(value: Buffer, ncpu: number): AggHist {
  const st = stride(AGG_HIST.size);
  const h = emptyHist();
  for (let cpu = 0; cpu < ncpu; cpu++) {
    const base = cpu * st;
    const n = u64(value, base + AGG_HIST.count);
    if (n === 0) continue;
    h.count += n;
    h.sumNs += u64(value, base + AGG_HIST.sum_ns);
    h.minNs = Math.min(h.minNs, u64(value, base + AGG_HIST.min_ns));
    h.maxNs = Math.max(h.maxNs, u64(value, base + AGG_HIST.max_ns));
    for (let b = 0; b < KT_AGG_BUCKETS; b++) h.hist[b] += u64(value, base + AGG_HIST.hist + 8 * b);
  }
  return h;
}

function sumVcpu(key: AggVcpuKey, value: Buffer, ncpu: number): AggVcpu {
  const st = stride(AGG_VCPU.size);
  const reasons = new Map<number, number>();
  const hw: AggHwTotals = { runs: 0, exits: 0, maxExits: 0, guestNs: 0, runNs: 0 };
  for (let cpu = 0; cpu < ncpu; cpu++) {
    const base = cpu * st;
    for (let r = 0; r < KT_AGG_REASONS; r++) {
      const n = u64(value, base + AGG_VCPU.reasons + 8 * r);
      if (n) reasons.set(r, (reasons.get(r) ?? 0) + n);
    }
    hw.runs += u64(value, base + AGG_VCPU.hw_runs);
    hw.exits += u64(value, base + AGG_VCPU.hw_exits);
    hw.maxExits = Math.max(hw.maxExits, u64(value, base + AGG_VCPU.hw_max_exits));
    hw.guestNs += u64(value, base + AGG_VCPU.guest_ns);
    hw.runNs += u64(value, base + AGG_VCPU.hw_run_ns);
  }
  return { key, run: sumAggIoctl(value, ncpu, st, AGG_VCPU.run), reasons, hw };
}

const hexKvm = (b: Buffer, off: number): string => `0x${b.readBigUInt64LE(off).toString(16)}`;

function vcpuKeyAt(b: Buffer, off: number): AggVcpuKey {
  return { tgid: b.readUInt32LE(off + AGG_VCPU_KEY.tgid), vcpuId: b.readInt32LE(off + AGG_VCPU_KEY.vcpu_id), kvm: hexKvm(b, off + AGG_VCPU_KEY.kvm) };
}

const isZero = (b: Buffer): boolean => b.every((x) => x === 0);

export interface AggregateMaps {
  ioctls: BpfMapPtr;
  vcpus: BpfMapPtr;
  handling: BpfMapPtr;
  hw: BpfMapPtr;
  vms: BpfMapPtr;
}

/** After load, before attach: the overflow entries (all-zero keys) the programs fall back to when a hash is full. */
export function prepareAggregateMaps(maps: AggregateMaps, ncpu: number): void {
  mapUpdate(maps.ioctls, Buffer.alloc(AGG_IOCTL_KEY.size), Buffer.alloc(stride(AGG_IOCTL.size) * ncpu));
  mapUpdate(maps.vcpus, Buffer.alloc(AGG_VCPU_KEY.size), Buffer.alloc(stride(AGG_VCPU.size) * ncpu));
  mapUpdate(maps.handling, Buffer.alloc(HANDLING_KEY.size), Buffer.alloc(stride(AGG_HIST.size) * ncpu));
  mapUpdate(maps.hw, Buffer.alloc(HW_KEY.size), Buffer.alloc(stride(AGG_HIST.size) * ncpu));
}

/** Every (key, per-CPU value) of a hash; entries removed meanwhile are skipped. */
function* entries(map: BpfMapPtr, keySize: number, value: Buffer): Generator<Buffer> {
  for (const key of mapKeys(map, keySize)) if (mapLookup(map, key, value)) yield key;
}

/** Read and sum every counter the programs kept. */
export function readAggregate(maps: AggregateMaps, ncpu: number): KernelAggregate {
  const agg: KernelAggregate = { ioctls: new Map(), ioctlOverflow: undefined, vcpus: [], vcpuOverflow: undefined, handling: [], handlingOverflow: undefined, hw: [], hwOverflow: undefined, vms: [] };
  let value = Buffer.alloc(stride(AGG_IOCTL.size) * ncpu);
  for (const key of entries(maps.ioctls, AGG_IOCTL_KEY.size, value)) {
    const c = sumAggIoctl(value, ncpu, stride(AGG_IOCTL.size));
    if (c.count === 0) continue;
    if (isZero(key)) {
      agg.ioctlOverflow = c;
      continue;
    }
    const tgid = key.readUInt32LE(AGG_IOCTL_KEY.tgid);
    let per = agg.ioctls.get(tgid);
    if (!per) agg.ioctls.set(tgid, (per = new Map()));
    per.set(key.readUInt32LE(AGG_IOCTL_KEY.cmd), c);
  }
  value = Buffer.alloc(stride(AGG_VCPU.size) * ncpu);
  for (const key of entries(maps.vcpus, AGG_VCPU_KEY.size, value)) {
    const v = sumVcpu(vcpuKeyAt(key, 0), value, ncpu);
    if (v.run.count === 0) continue;
    if (isZero(key)) agg.vcpuOverflow = v;
    else agg.vcpus.push(v);
  }
  value = Buffer.alloc(stride(AGG_HIST.size) * ncpu);
  for (const key of entries(maps.handling, HANDLING_KEY.size, value)) {
    const hist = sumHist(value, ncpu);
    if (hist.count === 0) continue;
    if (isZero(key)) {
      agg.handlingOverflow = hist;
      continue;
    }
    const exit: AggExitKey = {
      kind: key.readUInt8(HANDLING_KEY.kind),
      reason: key.readUInt32LE(HANDLING_KEY.reason),
      port: key.readUInt16LE(HANDLING_KEY.port),
      dir: key.readUInt8(HANDLING_KEY.dir),
      addr: key.readBigUInt64LE(HANDLING_KEY.addr),
    };
    agg.handling.push({ vcpu: vcpuKeyAt(key, HANDLING_KEY.vcpu), exit, hist });
  }
  for (const key of entries(maps.hw, HW_KEY.size, value)) {
    const hist = sumHist(value, ncpu);
    if (hist.count === 0) continue;
    if (isZero(key)) agg.hwOverflow = hist;
    else agg.hw.push({ vcpu: vcpuKeyAt(key, HW_KEY.vcpu), isa: key.readUInt32LE(HW_KEY.isa), reason: key.readUInt32LE(HW_KEY.reason), hist });
  }
  const vm = Buffer.alloc(AGG_VM.size);
  for (const key of entries(maps.vms, 8, vm)) {
    agg.vms.push({ kvm: hexKvm(key, 0), tgid: vm.readUInt32LE(AGG_VM.tgid), fd: vm.readInt32LE(AGG_VM.fd), createdNs: u64(vm, AGG_VM.created_ns) });
  }
  return agg;
}

/**
 * VM indices per process, as the decoder numbers VMs in records: creation order. VMs created while attached
 * are ordered by their creation time (agg_vms); VMs the counters name but that were created before (not in
 * agg_vms) come first, by kernel address — their real order is recorded nowhere. Returns "tgid/kvm" → index.
 */
export function vmIndexes(agg: Pick<KernelAggregate, 'vcpus' | 'vms' | 'hw' | 'handling'>): Map<string, number> {
  const created = new Map<number, AggVm[]>();
  for (const v of agg.vms) {
    if (!created.has(v.tgid)) created.set(v.tgid, []);
    created.get(v.tgid)!.push(v);
  }
  const seen = new Map<number, Set<string>>();
  for (const k of [...agg.vcpus.map((v) => v.key), ...agg.hw.map((h) => h.vcpu), ...agg.handling.map((h) => h.vcpu)]) {
    if (k.kvm === '0x0') continue;
    if (!seen.has(k.tgid)) seen.set(k.tgid, new Set());
    seen.get(k.tgid)!.add(k.kvm);
  }
  const out = new Map<string, number>();
  for (const tgid of new Set([...created.keys(), ...seen.keys()])) {
    const mine = (created.get(tgid) ?? []).sort((a, b) => a.createdNs - b.createdNs);
    const known = new Set(mine.map((v) => v.kvm));
    const early = [...(seen.get(tgid) ?? [])].filter((k) => !known.has(k)).sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
    [...early, ...mine.map((v) => v.kvm)].forEach((kvm, i) => out.set(`${tgid}/${kvm}`, i));
  }
  return out;
}
