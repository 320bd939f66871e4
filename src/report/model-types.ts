/**
 * The shape of the one report model (model.ts builds it; render-text, render-json and render-html draw it).
 * `kvm-trace report --format json` prints exactly this object.
 */
import type { BufferFlag, DurationStats, ExitReasonStats, HookStatus, HwExitStats, HwExitsStatus, RunSplit, VmmHandlingSummary } from '../decode/records.js';
import type { RunMapBlock } from '../analysis/kvm-run-lines.js';
import type { HistogramJson } from '../decode/histogram.js';

export interface FlagExample extends BufferFlag {
  pid: number;
  tid: number;
  comm: string;
  ts_ns: number;
  /** The ioctl's argument pointer. */
  arg: string;
}

/** An ioctl's latency: DurationStats (percentiles from decode/histogram.ts) and the mean, rounded. */
export type LatencySummary = DurationStats & { mean_ns: number };

/** Calls and the buffers they copied: per ioctl, and over all of them. */
export interface CallCounts {
  calls: number;
  errors: number;
  /** Copied buffers with a known length (flagged). */
  copies: number;
  bytes_copied: number;
  misaligned: number;
  cacheline_cross: number;
  /** Copies the kernel made whose length the capture does not reveal. */
  unknown_copies: number;
  /** Of `copies`: seen by a copy hook. */
  observed_copies: number;
  /** Of `copies`: derived from the copy rules (no attached hook sees their routine). */
  derived_copies: number;
}

export interface IoctlSummary extends CallCounts {
  name: string;
  errnos: Record<string, number>;
  latency: LatencySummary;
  histogram: HistogramJson;
  /** Flagged buffers, worst first (most extra lines, then misaligned). */
  worst: FlagExample[];
}

export interface ReasonLines {
  lines: number[];
  straddling: string[];
  kernel_lines: string[];
  user_lines: string[];
}

export interface VcpuSummary {
  pid: number;
  vcpu: number;
  kernel_addr: string | null;
  user_addr: string | null;
  mmap_size: number | null;
  runs: number;
  exits: Record<string, number>;
  /** Exit reason → kvm_run lines its exits touched (union over the exits seen). */
  lines: Record<string, ReasonLines>;
}

export interface RunMapReason {
  member: string | null;
  lines: number[];
  fields: Array<{ name: string; offset: number; size: number; straddles: boolean; part: string }>;
}

export interface KvmRunMap {
  size: number;
  line_size: number;
  /** Rows of the map: ceil(size / line_size). */
  rows: number;
  blocks: RunMapBlock[];
  /** Per exit reason seen (or IO/MMIO/HLT/HYPERCALL when none were): the fields and lines it touches. */
  reasons: Record<string, RunMapReason>;
}

export interface ReportModel {
  kind: 'kvm-trace-report';
  version: 1;
  source: { file: string; lines: number; records: number; ignored: number; by_type: Record<string, number> };
  capture: { strategy: string | null; duration_s: number | null; events: number | null; unknown_ioctls: number | null };
  line_size: number;
  /** Where the buffer flags came from. */
  flags_from: 'records' | 'derived' | 'mixed' | 'none';
  totals: CallCounts & { exits: number };
  /** Per copy hook (the kernel function it observes), from the capture's summary: attached or not, and why. */
  hooks: Record<string, HookStatus> | null;
  ioctls: IoctlSummary[];
  vcpus: VcpuSummary[];
  kvm_run: KvmRunMap | null;
  fds: { opened: number; closed: number; leaked: number; leaked_list: Array<{ pid: number; fd: number; fd_kind: string }> };
  lost: number;
  notes: string[];
  /** KVM_RUN returns per exit reason (perf-kvm-stat style); null without KVM_RUN records. */
  exit_stats: ExitReasonStats[] | null;
  /** VMM handling time per vCPU and exit; null without KVM_RUN records (or, aggregate, the summary's). */
  vmm_handling: VmmHandlingSummary | null;
  /** Hardware exits (attach --hw-exits), from the summary record: the statement, the table, the time split. */
  hw_exits: HwExitsStatus | null;
  hw_exit_stats: HwExitStats[] | null;
  run_split: RunSplit[] | null;
}
