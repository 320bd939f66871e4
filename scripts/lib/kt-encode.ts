/**
 * Raw kt_* records (bpf/kvm_trace.h, mirrored in src/bpf/event-layout.ts) built exactly as the BPF side
 * writes them, variable-length ioctl records included: to feed the decoder in tests, the fuzzer's synthetic
 * corpus and replays. Dev tooling (not part of the package's API); test/helpers/kt-records.ts re-exports
 * these beside its parsers.
 */
import {
  COPY,
  EXIT,
  FD,
  FORK,
  HDR,
  IOCTL,
  KT_EV_COPY,
  KT_EV_EXIT,
  KT_EV_FD,
  KT_EV_FORK,
  KT_EV_IOCTL,
  KT_EV_MMAP,
  KT_EV_THREAD_EXIT,
  KT_FD_OPEN,
  KT_FD_UNKNOWN,
  KT_TASK_COMM_LEN,
  MMAP,
} from '../../src/bpf/event-layout.js';

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
  /** Set these with flags |= KT_F_HW (as the BPF side does when its hardware-exit hooks are loaded). */
  hw_exits?: number;
  guest_ns?: number | bigint;
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
  dv.setUint32(IOCTL.hw_exits, e.hw_exits ?? 0, true);
  dv.setBigUint64(IOCTL.guest_ns, BigInt(e.guest_ns ?? 0), true);
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

/** kt_exit_event of a process (KT_EV_EXIT) or, with `thread`, of one of its threads (KT_EV_THREAD_EXIT). */
export function encodeExit(e: ExitInit & { thread?: boolean }): Uint8Array {
  const buf = new Uint8Array(EXIT.size);
  const dv = view(buf);
  putHdr(dv, e.thread ? KT_EV_THREAD_EXIT : KT_EV_EXIT, e);
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

export interface ForkInit extends HdrInit {
  child_pid: number;
  inherited?: number;
  comm?: string;
}

export function encodeFork(e: ForkInit): Uint8Array {
  const buf = new Uint8Array(FORK.size);
  const dv = view(buf);
  putHdr(dv, KT_EV_FORK, e);
  dv.setUint32(FORK.child_pid, e.child_pid, true);
  dv.setUint32(FORK.inherited, e.inherited ?? 1, true);
  putComm(dv, FORK.comm, e.comm);
  return buf;
}
