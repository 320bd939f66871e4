/**
 * What `kvm-trace top` reads: a source of cumulative snapshots. The UI (model, renderer, outputs) sees only
 * these types, so a richer kernel aggregate (per process / VM / vCPU keys, a KVM_RUN latency histogram per
 * vCPU, VMM handling histograms) replaces today's source without touching it.
 *
 * Every counter is cumulative since the source opened; the model turns successive snapshots into rates.
 * A field a source cannot provide is absent — never 0 — and the renderer shows "-" for it.
 */
import type { BpfIds } from '../bpf/tracer.js';

/**
 * A cumulative latency histogram in the kernel aggregate's bucket rule (bpf/kvm_trace.h KT_AGG_BUCKETS:
 * exact below 4 ns, then 4 buckets per power of two; see kernelBucket in src/decode/histogram.ts), with the exact maximum.
 */
export interface BucketCounts {
  counts: number[];
  max_ns: number;
}

/** One row's worth of counters: a process (vcpu null) or one vCPU. */
export interface TopEntity {
  /** Process id, or null when the source cannot attribute the counts to one process. */
  pid: number | null;
  comm?: string;
  /** VM index in the process, or null when unknown. */
  vm: number | null;
  /** vCPU id of a vCPU row; null for a process total. */
  vcpu: number | null;
  /** How to show the vCPU when the id is not the whole story ("63+": that slot also counts larger ids). */
  vcpu_label?: string;
  /** KVM_RUN returns by exit reason name ("IO", "HLT", …). */
  exits?: Record<string, number>;
  /** KVM ioctls returned, and those that failed. */
  ioctls?: number;
  errors?: number;
  /** KVM_RUN latency. */
  run_latency?: BucketCounts;
  /** VMM handling time (KVM_RUN return → the same vCPU's next KVM_RUN). */
  handling?: BucketCounts;
  /** In-kernel (hardware) exits, only where the kernel emits kvm:kvm_exit and the hooks are on. */
  hw_exits?: number;
}

/** A traced process as /proc shows it. */
export interface TopProcess {
  pid: number;
  comm: string;
  vms: number;
  vcpus: number[];
}

export interface TopSnapshot {
  /** CLOCK_MONOTONIC ns when read. */
  t_ns: number;
  entities: TopEntity[];
  processes: TopProcess[];
  /** Records the kernel side could not deliver (ring full). */
  lost: number;
  /** What the source can and cannot tell, one sentence each (shown once, not per row). */
  notes: string[];
}

export interface TopSource {
  /** "kernel aggregate (per-vCPU exit reasons, global ioctl counters)". */
  readonly description: string;
  snapshot(): TopSnapshot;
  /** Kernel ids of what the source loaded (to prove teardown). */
  ids(): BpfIds;
  /** Release everything; idempotent. May settle later (BPF links detach side by side). */
  close(): void | Promise<void>;
}
