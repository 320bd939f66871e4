/**
 * Typed readers and writers of the raw kt_* records (bpf/kvm_trace.h, mirrored in src/bpf/event-layout.ts),
 * for tests: parse*() read one record from a DataView into a plain object, independently of the decoder's
 * hot path, so a test can check what the BPF side wrote; encode*() (scripts/lib/kt-encode.ts, re-exported
 * here) build records exactly as the BPF side does (variable-length ioctl records included) to feed the decoder.
 *
 * A record shorter than its struct — or than offsetof(data) + in_len + out_len for ioctl records — parses
 * as undefined. 64-bit addresses are "0x…" strings (what the JSONL contract wants), times numbers.
 */
import {
  COPY,
  EXIT,
  FD,
  HDR,
  IOCTL,
  FORK,
  KT_TASK_COMM_LEN,
  MMAP,
} from '../../src/bpf/event-layout.js';
import { cstr, hex64, s64n, u64n } from '../../src/cdata/values.js';

// --- parsed records -------------------------------------------------------------------------------------

export interface KtHdr {
  type: number;
  flags: number;
  cpu: number;
  ts_ns: number;
  pid: number;
  tid: number;
}

export interface KtIoctlEvent extends KtHdr {
  enter_ns: number;
  /** Third ioctl argument as hex; `argValue` is the same as a number (exact below 2^53). */
  arg: string;
  argValue: number;
  ret: number;
  fd: number;
  cmd: number;
  run_kaddr: string;
  vcpu_id: number;
  exit_reason: number;
  /** Byte offset (in the record's view) of pio_data: the first 8 bytes at kvm_run + io.data_offset. */
  pioDataOffset: number;
  in_len: number;
  out_len: number;
  fd_kind: number;
  /** KVM_RUN with KT_F_HW: in-kernel exits and guest time. */
  hw_exits: number;
  guest_ns: number;
  comm: string;
  /** The record's view and the byte offsets of its in and out data (zero-copy, valid during the call). */
  view: DataView;
  inOffset: number;
  outOffset: number;
}

export interface KtFdEvent extends KtHdr {
  fd: number;
  op: number;
  kind: number;
  ret: number;
  comm: string;
}

export interface KtMmapEvent extends KtHdr {
  addr: string;
  len: number;
  pgoff: number;
  fd: number;
  kind: number;
  prot: number;
  mflags: number;
}

export interface KtExitEvent extends KtHdr {
  exit_code: number;
  comm: string;
}

export interface KtCopyEvent extends KtHdr {
  uaddr: string;
  len: number;
  dir: number;
  cmd: number;
  fd: number;
  /** enum kt_copy_hook: the kernel function it was observed in. */
  hook: number;
}

/** The record type of the record at `off` (0 when not even a type fits). */
export function recordType(dv: DataView, off: number, len: number): number {
  return len >= 2 ? dv.getUint16(off + HDR.type, true) : 0;
}

function parseHdr(dv: DataView, off: number): KtHdr {
  return {
    type: dv.getUint16(off + HDR.type, true),
    flags: dv.getUint16(off + HDR.flags, true),
    cpu: dv.getUint32(off + HDR.cpu, true),
    ts_ns: u64n(dv, off + HDR.ts_ns),
    pid: dv.getUint32(off + HDR.pid, true),
    tid: dv.getUint32(off + HDR.tid, true),
  };
}

/** kt_ioctl_event, or undefined when shorter than offsetof(data) + in_len + out_len. */
export function parseIoctl(dv: DataView, off: number, len: number): KtIoctlEvent | undefined {
  if (len < IOCTL.data) return undefined;
  const in_len = dv.getUint16(off + IOCTL.in_len, true);
  const out_len = dv.getUint16(off + IOCTL.out_len, true);
  if (len < IOCTL.data + in_len + out_len) return undefined;
  const h = parseHdr(dv, off);
  return {
    ...h,
    enter_ns: u64n(dv, off + IOCTL.enter_ns),
    arg: hex64(dv, off + IOCTL.arg),
    argValue: u64n(dv, off + IOCTL.arg),
    ret: s64n(dv, off + IOCTL.ret),
    fd: dv.getInt32(off + IOCTL.fd, true),
    cmd: dv.getUint32(off + IOCTL.cmd, true),
    run_kaddr: hex64(dv, off + IOCTL.run_kaddr),
    vcpu_id: dv.getInt32(off + IOCTL.vcpu_id, true),
    exit_reason: dv.getUint32(off + IOCTL.exit_reason, true),
    pioDataOffset: off + IOCTL.pio_data,
    in_len,
    out_len,
    fd_kind: dv.getUint32(off + IOCTL.fd_kind, true),
    hw_exits: dv.getUint32(off + IOCTL.hw_exits, true),
    guest_ns: u64n(dv, off + IOCTL.guest_ns),
    comm: cstr(dv, off + IOCTL.comm, KT_TASK_COMM_LEN),
    view: dv,
    inOffset: off + IOCTL.data,
    outOffset: off + IOCTL.data + in_len,
  };
}

export function parseFd(dv: DataView, off: number, len: number): KtFdEvent | undefined {
  if (len < FD.size) return undefined;
  return {
    ...parseHdr(dv, off),
    fd: dv.getInt32(off + FD.fd, true),
    op: dv.getUint32(off + FD.op, true),
    kind: dv.getUint32(off + FD.kind, true),
    ret: dv.getInt32(off + FD.ret, true),
    comm: cstr(dv, off + FD.comm, KT_TASK_COMM_LEN),
  };
}

export function parseMmap(dv: DataView, off: number, len: number): KtMmapEvent | undefined {
  if (len < MMAP.size) return undefined;
  return {
    ...parseHdr(dv, off),
    addr: hex64(dv, off + MMAP.addr),
    len: u64n(dv, off + MMAP.len),
    pgoff: u64n(dv, off + MMAP.pgoff),
    fd: dv.getInt32(off + MMAP.fd, true),
    kind: dv.getUint32(off + MMAP.kind, true),
    prot: dv.getUint32(off + MMAP.prot, true),
    mflags: dv.getUint32(off + MMAP.mflags, true),
  };
}

export function parseExit(dv: DataView, off: number, len: number): KtExitEvent | undefined {
  if (len < EXIT.size) return undefined;
  return {
    ...parseHdr(dv, off),
    exit_code: dv.getInt32(off + EXIT.exit_code, true),
    comm: cstr(dv, off + EXIT.comm, KT_TASK_COMM_LEN),
  };
}

export function parseCopy(dv: DataView, off: number, len: number): KtCopyEvent | undefined {
  if (len < COPY.size) return undefined;
  return {
    ...parseHdr(dv, off),
    uaddr: hex64(dv, off + COPY.uaddr),
    len: u64n(dv, off + COPY.len),
    dir: dv.getUint32(off + COPY.dir, true),
    cmd: dv.getUint32(off + COPY.cmd, true),
    fd: dv.getInt32(off + COPY.fd, true),
    hook: dv.getUint32(off + COPY.hook, true),
  };
}

export * from '../../scripts/lib/kt-encode.js';

export interface KtForkEvent extends KtHdr {
  child_pid: number;
  inherited: number;
  comm: string;
}

export function parseFork(dv: DataView, off: number, len: number): KtForkEvent | undefined {
  if (len < FORK.size) return undefined;
  return {
    ...parseHdr(dv, off),
    child_pid: dv.getUint32(off + FORK.child_pid, true),
    inherited: dv.getUint32(off + FORK.inherited, true),
    comm: cstr(dv, off + FORK.comm, KT_TASK_COMM_LEN),
  };
}
