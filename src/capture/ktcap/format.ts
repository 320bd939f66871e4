/**
 * The binary capture file (`kvm-trace attach -w FILE`, read by `kvm-trace decode` and `report`): the raw
 * ring records exactly as the BPF side wrote them, plus everything decoding them later needs, perf-record
 * style — so a capture costs the tracer a copy per record, and the decoding is done offline at any speed.
 *
 *   file    := "KVMTRCAP" u32 version u32 header-bytes (16) section*
 *   section := tag (4 ASCII bytes) u32 flags (0) u64 payload-bytes payload, zero-padded to 8
 *   tags    :  META  JSON CaptureMeta: tool version, kernel, options, strategy, clock pairing, record layout
 *              BTF   the kernel BTF the live decoder used (raw /sys/kernel/btf/vmlinux)
 *              BTFK  KVM's module BTF, split over BTF (/sys/kernel/btf/kvm), when KVM is a module
 *              PROC  JSON ProcSeed[]: what /proc showed of processes already running at attach
 *              RECS  frames, in ring order (one section per chunk the writer filled)
 *              END   JSON CaptureEnd: what only the end of the live run knew (CaptureFacts + counts)
 *   frame   := u32 length u32 kind data, zero-padded to 8 (the ring's own framing, with a kind instead of
 *              the kernel's page offset): kind 0 a raw kt_* record, kind 1 a lost mark (u64 count: the
 *              kernel's lost counter moved by this much here — the live capture emits its `lost` record
 *              at the same point).
 * A file cut short (the tracer killed) is readable up to its last whole section; without END the summary
 * says so.
 */
import { COPY, EXIT, FD, HDR, IOCTL, MMAP } from '../../bpf/event-layout.js';
import type { HookStatus } from '../../decode/records.js';

export const MAGIC = 'KVMTRCAP';
export const VERSION = 1;
export const FILE_HEADER_BYTES = 16;
export const SECTION_HEADER_BYTES = 16;
export const FRAME_HEADER_BYTES = 8;

export const FRAME_RECORD = 0;
export const FRAME_LOST = 1;

export type SectionTag = 'META' | 'BTF ' | 'BTFK' | 'PROC' | 'RECS' | 'END ';

/** Bytes a frame of `len` data bytes takes: header plus data, rounded up to 8. */
export function frameBytes(len: number): number {
  return (FRAME_HEADER_BYTES + len + 7) & ~7;
}

export function pad8(n: number): number {
  return (n + 7) & ~7;
}

export interface CaptureMeta {
  tool: 'kvm-trace';
  version: string;
  /** When the capture started (ISO 8601). */
  created: string;
  kernel: string;
  /** The same instant on both clocks: ts_ns in records is CLOCK_MONOTONIC; add realtime − monotonic for epoch ns. */
  clock: { monotonic_ns: string; realtime_ns: string };
  strategy: string;
  programs: string[];
  /** Per copy hook, attached or not and why (absent in captures of older kvm-trace versions). */
  hooks?: Record<string, HookStatus>;
  options: { pids: number[]; comm: string | null; lean: boolean };
  line_size: number;
  /** The kt_* record layout the records were written with (decoding refuses a different one). */
  layout: string;
}

export interface CaptureEnd {
  strategy: string;
  lost: number;
  duration_s: number;
  ring_rejected: number;
  no_enter: number;
  state_unavailable: number;
  attach_ms: number | null;
  error?: string;
  /** Raw records written, and records the writer had to drop (the disk could not keep up). */
  records: number;
  dropped: number;
}

/** The decoder's view of the record layout, as one string to compare. */
export function layoutFingerprint(): string {
  return JSON.stringify({ HDR, IOCTL, FD, MMAP, EXIT, COPY });
}
