/**
 * The kt_* records of bpf/kvm_trace.h, declared once here with the C layout DSL (offsets follow the C rules,
 * none typed by hand) and turned into plain numeric offsets for the hot path. test/event-layout.test.ts
 * reads the compiled BPF object's BTF and proves every struct size and member offset/size equals these.
 *
 * parse*() read one record from a DataView (the ring's data area, zero-copy) into a typed object; a record
 * shorter than its struct — or than offsetof(data) + in_len + out_len for ioctl records — is rejected
 * (undefined), and the caller counts it. encode*() write records the same way (tests, benchmarks, replay).
 * 64-bit addresses are kept as "0x…" strings (what the JSONL contract wants), times as numbers.
 */
import { array, memberAt, s32, s64, s8, struct, u16, u32, u64, u8, type RecordType } from '../kvm/abi/layout.js';

export const KT_TASK_COMM_LEN = 16;
export const KT_DATA_MAX = 512;
export const KT_RUN_SNAP = 288;

export const KT_EV_IOCTL = 1;
export const KT_EV_FD = 2;
export const KT_EV_MMAP = 3;
export const KT_EV_EXIT = 4;
export const KT_EV_COPY = 5;

export const KT_F_IN_FAULT = 1 << 0;
export const KT_F_OUT_FAULT = 1 << 1;
export const KT_F_IN_TRUNC = 1 << 2;
export const KT_F_OUT_TRUNC = 1 << 3;
export const KT_F_RUN = 1 << 4;
export const KT_F_NO_ENTER = 1 << 5;

export const KT_FD_UNKNOWN = 0;
export const KT_FD_SYSTEM = 1;
export const KT_FD_VM = 2;
export const KT_FD_VCPU = 3;
export const KT_FD_DEVICE = 4;

export const KT_FD_OPEN = 1;
export const KT_FD_CLOSE = 2;

export const KT_COPY_FROM_USER = 1;
export const KT_COPY_TO_USER = 2;

export const KT_HOOK_COPY_FROM_USER = 1;
export const KT_HOOK_COPY_TO_USER = 2;
export const KT_HOOK_MEMDUP_USER = 3;
export const KT_HOOK_VMEMDUP_USER = 4;

export const KT_STAT_LOST = 0;
export const KT_STAT_EVENTS = 1;
export const KT_STAT_NO_ENTER = 2;
export const KT_STAT_STATE_UNAVAILABLE = 3;
export const KT_STAT_MAX = 4;

export const KT_AGG_BUCKETS = 128;
export const KT_AGG_VCPUS = 64;
export const KT_AGG_REASONS = 64;

// `char comm[16]` is signed char on x86_64 / BPF; s8 keeps the BTF comparison honest.
const comm = array(s8, KT_TASK_COMM_LEN);

export const kt_hdr = struct('kt_hdr', [
  ['type', u16],
  ['flags', u16],
  ['cpu', u32],
  ['ts_ns', u64],
  ['pid', u32],
  ['tid', u32],
]);

export const kt_ioctl_event = struct('kt_ioctl_event', [
  ['hdr', kt_hdr],
  ['enter_ns', u64],
  ['arg', u64],
  ['ret', s64],
  ['fd', s32],
  ['cmd', u32],
  ['run_kaddr', u64],
  ['vcpu_id', s32],
  ['exit_reason', u32],
  ['pio_data', u64],
  ['in_len', u16],
  ['out_len', u16],
  ['fd_kind', u32],
  ['comm', comm],
  ['data', array(u8, 2 * KT_DATA_MAX)],
]);

export const kt_fd_event = struct('kt_fd_event', [
  ['hdr', kt_hdr],
  ['fd', s32],
  ['op', u32],
  ['kind', u32],
  ['ret', s32],
  ['comm', comm],
]);

export const kt_mmap_event = struct('kt_mmap_event', [
  ['hdr', kt_hdr],
  ['addr', u64],
  ['len', u64],
  ['pgoff', u64],
  ['fd', s32],
  ['kind', u32],
  ['prot', u32],
  ['mflags', u32],
]);

export const kt_exit_event = struct('kt_exit_event', [
  ['hdr', kt_hdr],
  ['exit_code', s32],
  ['__pad', u32],
  ['comm', comm],
]);

export const kt_copy_event = struct('kt_copy_event', [
  ['hdr', kt_hdr],
  ['uaddr', u64],
  ['len', u64],
  ['dir', u32],
  ['cmd', u32],
  ['fd', s32],
  ['hook', u32],
]);

// Aggregate-only mode: map values, not records (read per CPU by src/bpf/aggregate.ts).
export const kt_agg_ioctl = struct('kt_agg_ioctl', [
  ['count', u64],
  ['errors', u64],
  ['no_enter', u64],
  ['sum_ns', u64],
  ['max_ns', u64],
  ['hist', array(u64, KT_AGG_BUCKETS)],
]);

export const kt_agg_exits = struct('kt_agg_exits', [['reasons', array(u64, KT_AGG_REASONS)]]);

/** Every struct of kvm_trace.h, by C tag (what the BTF test walks). */
export const EVENT_STRUCTS: Record<string, RecordType> = {
  kt_hdr,
  kt_ioctl_event,
  kt_fd_event,
  kt_mmap_event,
  kt_exit_event,
  kt_copy_event,
  kt_agg_ioctl,
  kt_agg_exits,
};

const at = (t: RecordType, path: string): number => memberAt(t, path).offset;

// Offsets as plain numbers for the decoder's hot path.
export const HDR = {
  type: at(kt_hdr, 'type'),
  flags: at(kt_hdr, 'flags'),
  cpu: at(kt_hdr, 'cpu'),
  ts_ns: at(kt_hdr, 'ts_ns'),
  pid: at(kt_hdr, 'pid'),
  tid: at(kt_hdr, 'tid'),
  size: kt_hdr.size,
} as const;

export const IOCTL = {
  enter_ns: at(kt_ioctl_event, 'enter_ns'),
  arg: at(kt_ioctl_event, 'arg'),
  ret: at(kt_ioctl_event, 'ret'),
  fd: at(kt_ioctl_event, 'fd'),
  cmd: at(kt_ioctl_event, 'cmd'),
  run_kaddr: at(kt_ioctl_event, 'run_kaddr'),
  vcpu_id: at(kt_ioctl_event, 'vcpu_id'),
  exit_reason: at(kt_ioctl_event, 'exit_reason'),
  pio_data: at(kt_ioctl_event, 'pio_data'),
  in_len: at(kt_ioctl_event, 'in_len'),
  out_len: at(kt_ioctl_event, 'out_len'),
  fd_kind: at(kt_ioctl_event, 'fd_kind'),
  comm: at(kt_ioctl_event, 'comm'),
  data: at(kt_ioctl_event, 'data'),
  size: kt_ioctl_event.size,
} as const;

export const FD = {
  fd: at(kt_fd_event, 'fd'),
  op: at(kt_fd_event, 'op'),
  kind: at(kt_fd_event, 'kind'),
  ret: at(kt_fd_event, 'ret'),
  comm: at(kt_fd_event, 'comm'),
  size: kt_fd_event.size,
} as const;

export const MMAP = {
  addr: at(kt_mmap_event, 'addr'),
  len: at(kt_mmap_event, 'len'),
  pgoff: at(kt_mmap_event, 'pgoff'),
  fd: at(kt_mmap_event, 'fd'),
  kind: at(kt_mmap_event, 'kind'),
  prot: at(kt_mmap_event, 'prot'),
  mflags: at(kt_mmap_event, 'mflags'),
  size: kt_mmap_event.size,
} as const;

export const EXIT = {
  exit_code: at(kt_exit_event, 'exit_code'),
  comm: at(kt_exit_event, 'comm'),
  size: kt_exit_event.size,
} as const;

export const AGG_IOCTL = {
  count: at(kt_agg_ioctl, 'count'),
  errors: at(kt_agg_ioctl, 'errors'),
  no_enter: at(kt_agg_ioctl, 'no_enter'),
  sum_ns: at(kt_agg_ioctl, 'sum_ns'),
  max_ns: at(kt_agg_ioctl, 'max_ns'),
  hist: at(kt_agg_ioctl, 'hist'),
  size: kt_agg_ioctl.size,
} as const;

export const AGG_EXITS = {
  reasons: at(kt_agg_exits, 'reasons'),
  size: kt_agg_exits.size,
} as const;

export const COPY = {
  uaddr: at(kt_copy_event, 'uaddr'),
  len: at(kt_copy_event, 'len'),
  dir: at(kt_copy_event, 'dir'),
  cmd: at(kt_copy_event, 'cmd'),
  fd: at(kt_copy_event, 'fd'),
  hook: at(kt_copy_event, 'hook'),
  size: kt_copy_event.size,
} as const;

/** Smallest valid length of each record type (ioctl records may end right after their data bytes). */
export const MIN_LEN: Record<number, number> = {
  [KT_EV_IOCTL]: IOCTL.data,
  [KT_EV_FD]: FD.size,
  [KT_EV_MMAP]: MMAP.size,
  [KT_EV_EXIT]: EXIT.size,
  [KT_EV_COPY]: COPY.size,
};

// --- small readers shared with the decoder -----------------------------------------------------------

const TWO32 = 4294967296;

/** u64 as a number (exact below 2^53: times in ns, lengths). */
export function u64n(dv: DataView, off: number): number {
  return dv.getUint32(off + 4, true) * TWO32 + dv.getUint32(off, true);
}

/** s64 as a number (exact within ±2^53: return values, errnos). */
export function s64n(dv: DataView, off: number): number {
  return dv.getInt32(off + 4, true) * TWO32 + dv.getUint32(off, true);
}

/** u64 as "0x…" hex without going through BigInt. */
export function hex64(dv: DataView, off: number): string {
  const hi = dv.getUint32(off + 4, true);
  const lo = dv.getUint32(off, true);
  return hi === 0 ? `0x${lo.toString(16)}` : `0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}`;
}

/** A NUL-terminated char array as a string (comm is ASCII in practice; other bytes map to Latin-1). */
export function cstr(dv: DataView, off: number, max: number): string {
  let s = '';
  for (let i = 0; i < max; i++) {
    const c = dv.getUint8(off + i);
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  return s;
}

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

// --- encoders: build raw records (tests, benchmarks, replays) ---------------------------------------

export interface HdrInit {
  flags?: number;
  cpu?: number;
  ts_ns: number | bigint;
  pid: number;
  tid?: number;
}

function putHdr(dv: DataView, type: number, h: HdrInit): void {
  dv.setUint16(HDR.type, type, true);
  dv.setUint16(HDR.flags, h.flags ?? 0, true);
  dv.setUint32(HDR.cpu, h.cpu ?? 0, true);
  dv.setBigUint64(HDR.ts_ns, BigInt(h.ts_ns), true);
  dv.setUint32(HDR.pid, h.pid, true);
  dv.setUint32(HDR.tid, h.tid ?? h.pid, true);
}

function putComm(dv: DataView, off: number, comm: string | undefined): void {
  const b = Buffer.from(comm ?? '', 'latin1');
  for (let i = 0; i < Math.min(b.length, KT_TASK_COMM_LEN - 1); i++) dv.setUint8(off + i, b[i]);
}

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

export interface IoctlInit extends HdrInit {
  enter_ns?: number | bigint;
  arg?: number | bigint;
  ret?: number;
  fd: number;
  cmd: number;
  run_kaddr?: bigint;
  vcpu_id?: number;
  exit_reason?: number;
  /** Up to 8 bytes. */
  pio_data?: Uint8Array;
  fd_kind?: number;
  comm?: string;
  in?: Uint8Array;
  out?: Uint8Array;
}

/** A kt_ioctl_event exactly as long as its data needs (like the BPF side's variable-length output). */
export function encodeIoctl(e: IoctlInit): Uint8Array {
  const inB = e.in ?? new Uint8Array(0);
  const outB = e.out ?? new Uint8Array(0);
  const buf = new Uint8Array(IOCTL.data + inB.length + outB.length);
  const dv = view(buf);
  putHdr(dv, KT_EV_IOCTL, e);
  dv.setBigUint64(IOCTL.enter_ns, BigInt(e.enter_ns ?? 0), true);
  dv.setBigUint64(IOCTL.arg, BigInt.asUintN(64, BigInt(e.arg ?? 0)), true);
  dv.setBigInt64(IOCTL.ret, BigInt(e.ret ?? 0), true);
  dv.setInt32(IOCTL.fd, e.fd, true);
  dv.setUint32(IOCTL.cmd, e.cmd >>> 0, true);
  dv.setBigUint64(IOCTL.run_kaddr, e.run_kaddr ?? 0n, true);
  dv.setInt32(IOCTL.vcpu_id, e.vcpu_id ?? -1, true);
  dv.setUint32(IOCTL.exit_reason, e.exit_reason ?? 0, true);
  if (e.pio_data) buf.set(e.pio_data.subarray(0, 8), IOCTL.pio_data);
  dv.setUint16(IOCTL.in_len, inB.length, true);
  dv.setUint16(IOCTL.out_len, outB.length, true);
  dv.setUint32(IOCTL.fd_kind, e.fd_kind ?? KT_FD_UNKNOWN, true);
  putComm(dv, IOCTL.comm, e.comm);
  buf.set(inB, IOCTL.data);
  buf.set(outB, IOCTL.data + inB.length);
  return buf;
}

export interface FdInit extends HdrInit {
  fd: number;
  op: number;
  kind: number;
  ret?: number;
  comm?: string;
}

export function encodeFd(e: FdInit): Uint8Array {
  const buf = new Uint8Array(FD.size);
  const dv = view(buf);
  putHdr(dv, KT_EV_FD, e);
  dv.setInt32(FD.fd, e.fd, true);
  dv.setUint32(FD.op, e.op, true);
  dv.setUint32(FD.kind, e.kind, true);
  dv.setInt32(FD.ret, e.ret ?? (e.op === KT_FD_OPEN ? e.fd : 0), true);
  putComm(dv, FD.comm, e.comm);
  return buf;
}

export interface MmapInit extends HdrInit {
  addr: bigint;
  len: number;
  pgoff?: number;
  fd: number;
  kind: number;
  prot?: number;
  mflags?: number;
}

export function encodeMmap(e: MmapInit): Uint8Array {
  const buf = new Uint8Array(MMAP.size);
  const dv = view(buf);
  putHdr(dv, KT_EV_MMAP, e);
  dv.setBigUint64(MMAP.addr, e.addr, true);
  dv.setBigUint64(MMAP.len, BigInt(e.len), true);
  dv.setBigUint64(MMAP.pgoff, BigInt(e.pgoff ?? 0), true);
  dv.setInt32(MMAP.fd, e.fd, true);
  dv.setUint32(MMAP.kind, e.kind, true);
  dv.setUint32(MMAP.prot, e.prot ?? 3, true);
  dv.setUint32(MMAP.mflags, e.mflags ?? 1, true);
  return buf;
}

export interface ExitInit extends HdrInit {
  exit_code?: number;
  comm?: string;
}

export function encodeExit(e: ExitInit): Uint8Array {
  const buf = new Uint8Array(EXIT.size);
  const dv = view(buf);
  putHdr(dv, KT_EV_EXIT, e);
  dv.setInt32(EXIT.exit_code, e.exit_code ?? 0, true);
  putComm(dv, EXIT.comm, e.comm);
  return buf;
}

export interface CopyInit extends HdrInit {
  uaddr: bigint;
  len: number;
  dir: number;
  cmd: number;
  fd: number;
  hook?: number;
}

export function encodeCopy(e: CopyInit): Uint8Array {
  const buf = new Uint8Array(COPY.size);
  const dv = view(buf);
  putHdr(dv, KT_EV_COPY, e);
  dv.setBigUint64(COPY.uaddr, e.uaddr, true);
  dv.setBigUint64(COPY.len, BigInt(e.len), true);
  dv.setUint32(COPY.dir, e.dir, true);
  dv.setUint32(COPY.cmd, e.cmd >>> 0, true);
  dv.setInt32(COPY.fd, e.fd, true);
  dv.setUint32(COPY.hook, e.hook ?? 0, true);
  return buf;
}
