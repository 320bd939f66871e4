/**
 * Span and metric attribute names, and the mapping from JSONL records to attributes. One place, so the span
 * builder, the metrics, the dashboards and their test all agree on the spelling.
 *
 * Where an OpenTelemetry semantic convention fits, its name is used: process.pid, process.executable.name,
 * thread.id, thread.name, error.type (the errno name of a failed ioctl); host.* and service.* are resource
 * attributes (NodeSDK's host and environment detectors). There is no convention for hypervisors yet, so the
 * rest is kvm-trace's own `kvm.` namespace. The README's attribute table lists them all; a test checks it
 * against what is emitted. process.pid, thread.id, thread.name and process.executable.name are still
 * "incubating" in the conventions, and the semconv package asks users to copy incubating names rather than
 * import them (its incubating entry point may change in a minor release), so they are spelled here; the
 * stable ones are imported.
 */
import type { Attributes, AttributeValue } from '@opentelemetry/api';
import { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';
import type { BufferFlag, ExitInfo, IoctlRecord } from '../../decode/records.js';

// OpenTelemetry semantic conventions (incubating, copied by name).
export const ATTR_PROCESS_PID = 'process.pid';
export const ATTR_PROCESS_EXECUTABLE_NAME = 'process.executable.name';
export const ATTR_THREAD_ID = 'thread.id';
export const ATTR_THREAD_NAME = 'thread.name';
/** The errno name ("ENOTTY") of a failed ioctl; absent on success (spans and metrics). */
export { ATTR_ERROR_TYPE };

// kvm-trace's own namespace.
export const ATTR_IOCTL_NAME = 'kvm.ioctl.name';
export const ATTR_IOCTL_CMD = 'kvm.ioctl.cmd';
export const ATTR_IOCTL_DIR = 'kvm.ioctl.dir';
export const ATTR_IOCTL_SIZE = 'kvm.ioctl.size';
export const ATTR_IOCTL_ARG = 'kvm.ioctl.arg';
export const ATTR_IOCTL_RET = 'kvm.ioctl.ret';
export const ATTR_IOCTL_LATENCY_NS = 'kvm.ioctl.latency_ns';
/** The syscall's entry was not seen (capture attached mid-call): no latency, span starts at the exit. */
export const ATTR_IOCTL_NO_ENTER = 'kvm.ioctl.no_enter';
/** The decoded argument struct, as JSON (capped at ARGS_JSON_MAX characters). */
export const ATTR_IOCTL_ARGS = 'kvm.ioctl.args';
export const ATTR_IOCTL_EXPLAIN = 'kvm.ioctl.explain';
export const ATTR_FD = 'kvm.fd';
export const ATTR_FD_KIND = 'kvm.fd.kind';
export const ATTR_VM = 'kvm.vm';
export const ATTR_VCPU = 'kvm.vcpu';
export const ATTR_EXIT_REASON = 'kvm.exit.reason';
export const ATTR_EXIT_CODE = 'kvm.exit.code';
/** What the VMM dispatches on ("IO out 0x3f8", "MMIO write 0xfee00000-0xfee00fff", "HLT"): src/analysis/exit-key.ts. */
export const ATTR_EXIT_KEY = 'kvm.exit.key';
/** A hardware (in-kernel) exit reason as the running kernel names it ("npf", "EPT_VIOLATION"), and its ISA. */
export const ATTR_EXIT_HW_REASON = 'kvm.exit.hw_reason';
export const ATTR_ISA = 'kvm.isa';
/** Exit details are `kvm.exit.<detail>` (e.g. kvm.exit.port, kvm.exit.size, kvm.exit.direction). */
export const EXIT_DETAIL_PREFIX = 'kvm.exit.';

// Aggregated / sampled KVM_RUN spans.
export const ATTR_RUN_AGGREGATED = 'kvm.run.aggregated';
export const ATTR_RUN_COUNT = 'kvm.run.count';
export const ATTR_RUN_ERRORS = 'kvm.run.errors';
/** Runs in the window whose entry was seen (the latency fields cover these). */
export const ATTR_RUN_TIMED = 'kvm.run.timed';
export const ATTR_RUN_LATENCY_MIN_NS = 'kvm.run.latency_min_ns';
export const ATTR_RUN_LATENCY_MAX_NS = 'kvm.run.latency_max_ns';
export const ATTR_RUN_LATENCY_SUM_NS = 'kvm.run.latency_sum_ns';
/** Exits by reason in an aggregated span: `kvm.run.exits.<REASON>` = count. */
export const RUN_EXITS_PREFIX = 'kvm.run.exits.';
/** Failed runs by errno in an aggregated span: `kvm.run.errnos.<ERRNO>` = count. */
export const RUN_ERRNOS_PREFIX = 'kvm.run.errnos.';
export const ATTR_RUN_WINDOW_MS = 'kvm.run.window_ms';
export const ATTR_RUN_SAMPLE_EVERY = 'kvm.run.sample_every';
/** Position of a sampled run among its vCPU's runs (1-based). */
export const ATTR_RUN_SEQ = 'kvm.run.seq';

// VM / vCPU / process spans.
export const ATTR_VCPU_FD = 'kvm.vcpu.fd';
export const ATTR_VM_FD = 'kvm.vm.fd';
/** The VM or vCPU existed before the capture began (its span starts at the first record seen). */
export const ATTR_SEEN_LATE = 'kvm.seen_late';
/** How the span ended: close, leak (still open at process exit), capture_end. */
export const ATTR_END_REASON = 'kvm.end';
export const ATTR_KVM_RUN_USER_ADDR = 'kvm.run.user_addr';
export const ATTR_KVM_RUN_KERNEL_ADDR = 'kvm.run.kernel_addr';
export const ATTR_KVM_RUN_MMAP_SIZE = 'kvm.run.mmap_size';

// Buffer flag events.
export const EVENT_MISALIGNED = 'kvm.buffer.misaligned';
export const EVENT_CACHELINE_CROSS = 'kvm.buffer.cacheline_cross';
export const ATTR_BUFFER_WHAT = 'kvm.buffer.what';
export const ATTR_BUFFER_DIR = 'kvm.buffer.dir';
export const ATTR_BUFFER_ADDR = 'kvm.buffer.addr';
export const ATTR_BUFFER_LEN = 'kvm.buffer.len';
export const ATTR_BUFFER_ALIGN = 'kvm.buffer.align';
export const ATTR_BUFFER_LINES = 'kvm.buffer.lines';
export const ATTR_BUFFER_MIN_LINES = 'kvm.buffer.min_lines';
export const ATTR_BUFFER_MISALIGNED = 'kvm.buffer.misaligned';
export const ATTR_BUFFER_CACHELINE_CROSS = 'kvm.buffer.cacheline_cross';
export const ATTR_BUFFER_SOURCE = 'kvm.buffer.source';
/** Metric label: misaligned | cacheline_cross. */
export const ATTR_BUFFER_FLAG = 'kvm.buffer.flag';

/** Span names. Ioctl spans are named by the ioctl (KVM_SET_REGS, …). */
export const SPAN_VM = 'kvm.vm';
export const SPAN_VCPU = 'kvm.vcpu';
export const SPAN_PROCESS = 'kvm.process';

export const ARGS_JSON_MAX = 2048;

/** process.pid / thread.id / thread.name for any record with a pid, tid and comm. */
export function threadAttributes(r: { pid: number; tid: number; comm?: string }): Attributes {
  const a: Attributes = { [ATTR_PROCESS_PID]: r.pid, [ATTR_THREAD_ID]: r.tid };
  if (r.comm) a[ATTR_THREAD_NAME] = r.comm;
  return a;
}

/**
 * The attributes of one ioctl span. `comm` is the kernel task name (15 characters at most); only for the main
 * thread (tid == pid) is it also the executable's (truncated) name.
 */
export function ioctlAttributes(r: IoctlRecord): Attributes {
  const a: Attributes = threadAttributes(r);
  a[ATTR_IOCTL_NAME] = r.name;
  a[ATTR_IOCTL_CMD] = r.cmd;
  a[ATTR_IOCTL_DIR] = r.dir;
  a[ATTR_IOCTL_SIZE] = r.size;
  a[ATTR_IOCTL_ARG] = r.arg;
  a[ATTR_IOCTL_RET] = r.ret;
  // No latency for a call whose entry was not seen (it would read 0): kvm.ioctl.no_enter says so.
  if (r.no_enter) a[ATTR_IOCTL_NO_ENTER] = true;
  else a[ATTR_IOCTL_LATENCY_NS] = r.latency_ns;
  a[ATTR_FD] = r.fd;
  a[ATTR_FD_KIND] = r.fd_kind;
  if (r.vm !== null) a[ATTR_VM] = r.vm;
  if (r.vcpu !== null) a[ATTR_VCPU] = r.vcpu;
  if (r.errno) a[ATTR_ERROR_TYPE] = r.errno;
  if (r.explain) a[ATTR_IOCTL_EXPLAIN] = r.explain;
  if (r.args && Object.keys(r.args).length > 0) {
    const json = safeJson(r.args);
    if (json) a[ATTR_IOCTL_ARGS] = json.length > ARGS_JSON_MAX ? `${json.slice(0, ARGS_JSON_MAX - 1)}…` : json;
  }
  if (r.exit) Object.assign(a, exitAttributes(r.exit));
  return a;
}

/** kvm.exit.reason, kvm.exit.code and each detail as kvm.exit.<detail> (nested objects joined with dots). */
export function exitAttributes(exit: ExitInfo): Attributes {
  const a: Attributes = { [ATTR_EXIT_REASON]: exit.reason, [ATTR_EXIT_CODE]: exit.code };
  for (const [k, v] of Object.entries(exit)) {
    if (k === 'reason' || k === 'code') continue;
    flattenInto(a, EXIT_DETAIL_PREFIX + k, v, 0);
  }
  return a;
}

/** Attributes of a buffer flag event. */
export function flagAttributes(f: BufferFlag): Attributes {
  return {
    [ATTR_BUFFER_WHAT]: f.what,
    [ATTR_BUFFER_DIR]: f.dir,
    [ATTR_BUFFER_ADDR]: f.addr,
    [ATTR_BUFFER_LEN]: f.len,
    [ATTR_BUFFER_ALIGN]: f.align,
    [ATTR_BUFFER_LINES]: f.lines,
    [ATTR_BUFFER_MIN_LINES]: f.min_lines,
    [ATTR_BUFFER_MISALIGNED]: f.misaligned,
    [ATTR_BUFFER_CACHELINE_CROSS]: f.cacheline_cross,
    [ATTR_BUFFER_SOURCE]: f.source,
  };
}

/** The event name for a flagged buffer, or undefined when the buffer is neither misaligned nor crossing. */
export function flagEventName(f: BufferFlag): string | undefined {
  if (f.misaligned) return EVENT_MISALIGNED;
  if (f.cacheline_cross) return EVENT_CACHELINE_CROSS;
  return undefined;
}

function flattenInto(out: Attributes, key: string, v: unknown, depth: number): void {
  const scalar = toScalar(v);
  if (scalar !== undefined) {
    out[key] = scalar;
  } else if (Array.isArray(v)) {
    const scalars = v.map(toScalar);
    const kinds = new Set(scalars.map((s) => typeof s));
    // OTel arrays must be homogeneous primitives; anything else is kept readable as JSON.
    if (scalars.length > 0 && kinds.size === 1 && !kinds.has('undefined')) out[key] = scalars as AttributeValue;
    else out[key] = safeJson(v) ?? String(v);
  } else if (v && typeof v === 'object' && depth < 3) {
    for (const [k, inner] of Object.entries(v)) flattenInto(out, `${key}.${k}`, inner, depth + 1);
  } else if (v !== undefined && v !== null) {
    out[key] = safeJson(v) ?? String(v);
  }
}

function toScalar(v: unknown): string | number | boolean | undefined {
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  return undefined;
}

function safeJson(v: unknown): string | undefined {
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x));
  } catch {
    return undefined;
  }
}
