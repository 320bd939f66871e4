/**
 * The decoder: one call per raw ring-buffer record (kt_* of bpf/kvm_trace.h) → zero or more JSONL records
 * (src/decode/records.ts) handed to `emit`. It names each ioctl from the table, decodes its argument
 * generically from the kernel's BTF, decodes KVM_RUN exits from the kvm_run snapshot, tracks per process
 * which fds are /dev/kvm, VM, vCPU and device fds (and their VM index / vCPU id), and joins each vCPU's
 * kvm_run user address (mmap) with its kernel address (KVM_RUN) into kvm_run records (kvm-run-join.ts).
 *
 * Hot path: KVM_RUN records do no BTF walk and no table lookup beyond one Map hit (per-request info and
 * per-struct decoders are compiled once); with `lean`, KVM_RUN exits carry only {reason, code}.
 * Records shorter than their struct are rejected and counted, never thrown on.
 */
import { constants } from 'node:os';
import type { Btf } from '../btf/index.js';
import { kernelBtf } from '../btf/kernel.js';
import { errnoName } from '../ffi/errors.js';
import { BtfArgsDecoder } from './btf-args.js';
import {
  COPY,
  EXIT,
  FD,
  HDR,
  IOCTL,
  KT_COPY_TO_USER,
  KT_EV_COPY,
  KT_EV_EXIT,
  KT_EV_FD,
  KT_EV_IOCTL,
  KT_EV_MMAP,
  KT_FD_OPEN,
  KT_F_NO_ENTER,
  KT_F_RUN,
  MMAP,
} from '../bpf/event-layout.js';
import { COPY_HOOKS } from '../bpf/programs.js';
import { hex64, s64n, u64n } from '../cdata/values.js';
import { KVM_EXIT } from '../kvm/abi/exit-reasons.generated.js';
import { exitReasonName } from '../kvm/abi/ioctl-table.js';
import { CommCache } from './comm-cache.js';
import { ExitDecoder } from './exit.js';
import { CmdTable, decodeArgs, type CmdInfo } from './ioctl-args.js';
import { kernelAddrSeen, unjoinedRuns, userAddrSeen } from './kvm-run-join.js';
import { ProcessTable, pidsWithKvmFds, type FdInfo, type ProcessState, type SeedResult } from './processes.js';
import type { CopyRecord, FdKind, FdRecord, IoctlRecord, TraceRecord } from './records.js';

export interface DecoderOptions {
  /** Where decoded records go (called synchronously from decode()). */
  emit: (record: TraceRecord) => void;
  /** BTF to decode arguments and kvm_run with; default: the running kernel's. */
  btf?: Btf;
  /** Skip `args` of every ioctl and exit details of KVM_RUN (reason and code only): fastest decoding. */
  lean?: boolean;
}

export interface DecoderStats {
  /** Raw records seen. */
  events: number;
  ioctls: number;
  /** ioctl records whose request number is not in the table. */
  unknownIoctls: number;
  /** Records rejected as shorter than their struct (or than their declared data), by record type. */
  rejected: number;
  /** Records of a type this decoder does not know. */
  unknownTypes: number;
}

/** KVM_EXIT_INTR: the exit reason KVM sets when KVM_RUN returns -EINTR (a signal is pending). */
const EXIT_INTR = KVM_EXIT.INTR;
const EBADF = constants.errno.EBADF;
/** kvm_create_device.flags bit: only test whether the device type exists, create nothing. */
const KVM_CREATE_DEVICE_TEST = 1;

const KERNEL_KINDS: FdKind[] = ['unknown', 'system', 'vm', 'vcpu', 'device'];
/** enum kt_copy_hook → the kernel function the copy was seen in. */
const HOOK_NAMES = new Map(COPY_HOOKS.map((h) => [h.id, h.hook]));
const hookName = (id: number): string => HOOK_NAMES.get(id) ?? `hook_${id}`;
const kernelKind = (k: number): FdKind => KERNEL_KINDS[k] ?? 'unknown';

export class Decoder {
  readonly stats: DecoderStats = { events: 0, ioctls: 0, unknownIoctls: 0, rejected: 0, unknownTypes: 0 };
  readonly procs = new ProcessTable();
  private readonly emit: (r: TraceRecord) => void;
  private readonly lean: boolean;
  private readonly cmds: CmdTable;
  private readonly exits: Pick<ExitDecoder, 'decode' | 'reasonName'>;
  private readonly comms = new CommCache();

  constructor(opts: DecoderOptions) {
    const btf = opts.btf ?? kernelBtf();
    const args = new BtfArgsDecoder(btf);
    this.emit = opts.emit;
    this.lean = opts.lean ?? false;
    this.cmds = new CmdTable(btf, args);
    try {
      this.exits = new ExitDecoder(btf, args);
    } catch (e) {
      // A BTF without struct kvm_run (a kernel without KVM, a foreign BTF): exits keep reason and code.
      this.warnings.push(`exit details unavailable: ${(e as Error).message}`);
      this.exits = { reasonName: exitReasonName, decode: (code) => ({ reason: exitReasonName(code), code }) };
    }
  }

  /** Degradations found at construction (printed once by the caller). */
  readonly warnings: string[] = [];

  /** Decode one raw record (`len` bytes at `off` of `dv`, e.g. straight from the ring). */
  decode(dv: DataView, off: number, len: number): void {
    this.stats.events++;
    if (len < HDR.size) {
      this.stats.rejected++;
      return;
    }
    switch (dv.getUint16(off + HDR.type, true)) {
      case KT_EV_IOCTL:
        return this.ioctl(dv, off, len);
      case KT_EV_FD:
        return this.fdEvent(dv, off, len);
      case KT_EV_MMAP:
        return this.mmapEvent(dv, off, len);
      case KT_EV_EXIT:
        return this.exitEvent(dv, off, len);
      case KT_EV_COPY:
        return this.copyEvent(dv, off, len);
      default:
        this.stats.unknownTypes++;
    }
  }

  /** Seed fd kinds and kvm_run mappings of an already running process from /proc (call at attach). */
  seedProcess(pid: number, procRoot = '/proc'): SeedResult {
    return this.procs.seedFromProc(pid, procRoot);
  }

  /**
   * Seed every process that holds a KVM fd (tracing without -p); `accept` filters by pid (e.g. by comm).
   * Processes that disappear meanwhile are skipped.
   */
  seedAll(accept: (pid: number) => boolean = () => true, procRoot = '/proc'): SeedResult[] {
    const out: SeedResult[] = [];
    for (const pid of pidsWithKvmFds(procRoot)) {
      if (!accept(pid)) continue;
      try {
        out.push(this.procs.seedFromProc(pid, procRoot));
      } catch {
        // exited between the scan and the seeding
      }
    }
    return out;
  }

  /** End of trace: emit the kvm_run records not emitted yet (one address still unknown). */
  finish(): void {
    for (const p of this.procs.all()) this.flushRuns(p);
  }

  // --- ioctl ------------------------------------------------------------------------------------------

  private ioctl(dv: DataView, off: number, len: number): void {
    if (len < IOCTL.data) {
      this.stats.rejected++;
      return;
    }
    const inLen = dv.getUint16(off + IOCTL.in_len, true);
    const outLen = dv.getUint16(off + IOCTL.out_len, true);
    if (len < IOCTL.data + inLen + outLen) {
      this.stats.rejected++;
      return;
    }
    this.stats.ioctls++;
    const flags = dv.getUint16(off + HDR.flags, true);
    const pid = dv.getUint32(off + HDR.pid, true);
    const tid = dv.getUint32(off + HDR.tid, true);
    const fd = dv.getInt32(off + IOCTL.fd, true);
    const cmd = dv.getUint32(off + IOCTL.cmd, true);
    const ret = s64n(dv, off + IOCTL.ret);
    const ts = u64n(dv, off + HDR.ts_ns);
    const noEnter = (flags & KT_F_NO_ENTER) !== 0;
    const enter = noEnter ? 0 : u64n(dv, off + IOCTL.enter_ns);

    const proc = this.procs.get(pid);
    let info = proc.fds.get(fd);
    const kernelFdKind = dv.getUint32(off + IOCTL.fd_kind, true);
    if (!info && kernelFdKind !== 0) {
      // Created before we attached (or seeding missed it): adopt the kernel's view of the fd.
      info = { kind: kernelKind(kernelFdKind), vm: null, vcpu: null };
      proc.fds.set(fd, info);
    }
    const kind: FdKind = info ? info.kind : 'unknown';
    const c = this.cmds.get(cmd, kind);
    if (!c.known) this.stats.unknownIoctls++;

    let vcpu = info ? info.vcpu : null;
    const isRun = c.isRun && (flags & KT_F_RUN) !== 0;
    if (isRun) {
      const id = dv.getInt32(off + IOCTL.vcpu_id, true);
      if (id >= 0) {
        vcpu = id;
        if (info && info.vcpu === null) info.vcpu = id;
      }
    }

    const r: IoctlRecord = {
      type: 'ioctl',
      ts_ns: ts,
      enter_ns: enter,
      pid,
      tid,
      comm: this.comms.get(dv, off + IOCTL.comm, pid, tid),
      fd,
      fd_kind: kind,
      vm: info ? info.vm : null,
      vcpu,
      cmd: c.cmdHex,
      name: c.name,
      size: c.size,
      dir: c.dir,
      arg: hex64(dv, off + IOCTL.arg),
      ret,
      errno: ret < 0 ? errnoName(-ret) : null,
      latency_ns: noEnter ? 0 : ts - enter,
    };
    if (noEnter) r.no_enter = true;

    const inOff = off + IOCTL.data;
    const outOff = inOff + inLen;
    if (isRun) {
      const code = dv.getUint32(off + IOCTL.exit_reason, true);
      // A failed KVM_RUN leaves kvm_run.exit_reason stale, except -EINTR, for which KVM sets KVM_EXIT_INTR.
      if (ret >= 0 || code === EXIT_INTR) {
        r.exit = this.lean ? { reason: this.exits.reasonName(code), code } : this.exits.decode(code, dv, outOff, outLen, off + IOCTL.pio_data);
      }
      const run = kernelAddrSeen(proc, fd, vcpu, dv, off + IOCTL.run_kaddr);
      if (run) this.emitAfter.push(run);
    } else if (!this.lean) {
      decodeArgs(c, r, dv, off + IOCTL.arg, flags, inOff, inLen, outOff, outLen);
    }

    if (c.creates !== null && ret >= 0) this.created(proc, c, fd, ret, dv, off, outOff, outLen, r);
    this.emit(r);
    this.drainAfter();
  }

  /** KVM_CREATE_VM / _VCPU / _DEVICE succeeded: register the new fd and emit its open record. */
  private created(p: ProcessState, c: CmdInfo, fd: number, ret: number, dv: DataView, off: number, outOff: number, outLen: number, r: IoctlRecord): void {
    let newFd = ret;
    let info: FdInfo;
    if (c.creates === 'vm') {
      info = p.addVm(ret);
    } else if (c.creates === 'vcpu') {
      info = { kind: 'vcpu', vm: p.vmOf(fd), vcpu: u64n(dv, off + IOCTL.arg) };
      p.fds.set(ret, info);
      const run = p.runs.get(ret);
      if (run) run.vcpu = info.vcpu;
    } else {
      // KVM_CREATE_DEVICE returns 0; the new fd is kvm_create_device.fd in the out data.
      const at = c.createdFdOffset;
      const fl = c.createdFlagsOffset;
      if (at === undefined || outLen < at + 4) return;
      if (fl !== undefined && outLen >= fl + 4 && dv.getUint32(outOff + fl, true) & KVM_CREATE_DEVICE_TEST) return;
      newFd = dv.getInt32(outOff + at, true);
      info = { kind: 'device', vm: p.vmOf(fd), vcpu: null };
      p.fds.set(newFd, info);
    }
    const rec: FdRecord = { type: 'fd', ts_ns: r.ts_ns, pid: r.pid, tid: r.tid, op: 'open', fd: newFd, fd_kind: info.kind, vm: info.vm, vcpu: info.vcpu, ret: newFd };
    this.emitAfter.push(rec);
  }

  /** Records produced while building an ioctl record, emitted right after it (open of a created fd). */
  private readonly emitAfter: TraceRecord[] = [];

  // --- kvm_run ------------------------------------------------------------------------------------------

  private flushRuns(p: ProcessState): void {
    for (const r of unjoinedRuns(p)) this.emit(r);
  }

  // --- other record types ---------------------------------------------------------------------------

  private fdEvent(dv: DataView, off: number, len: number): void {
    if (len < FD.size) {
      this.stats.rejected++;
      return;
    }
    const pid = dv.getUint32(off + HDR.pid, true);
    const fd = dv.getInt32(off + FD.fd, true);
    const ret = dv.getInt32(off + FD.ret, true);
    const p = this.procs.get(pid);
    const base = { type: 'fd' as const, ts_ns: u64n(dv, off + HDR.ts_ns), pid, tid: dv.getUint32(off + HDR.tid, true) };
    if (dv.getUint32(off + FD.op, true) === KT_FD_OPEN) {
      if (ret < 0) return; // a failed open creates no fd (the BPF side should not send these)
      const info: FdInfo = { kind: kernelKind(dv.getUint32(off + FD.kind, true)), vm: null, vcpu: null };
      if (info.kind === 'unknown') info.kind = 'system';
      p.fds.set(ret, info);
      this.emit({ ...base, op: 'open', fd: ret, fd_kind: info.kind, vm: null, vcpu: null, ret });
      return;
    }
    const info = p.fds.get(fd);
    const kind = info?.kind ?? kernelKind(dv.getUint32(off + FD.kind, true));
    if (ret !== -EBADF) p.fds.delete(fd); // close releases the fd even when it reports an error, except EBADF
    this.emit({ ...base, op: 'close', fd, fd_kind: kind, vm: info?.vm ?? null, vcpu: info?.vcpu ?? null, ret });
  }

  private mmapEvent(dv: DataView, off: number, len: number): void {
    if (len < MMAP.size) {
      this.stats.rejected++;
      return;
    }
    const pid = dv.getUint32(off + HDR.pid, true);
    const fd = dv.getInt32(off + MMAP.fd, true);
    const p = this.procs.get(pid);
    let info = p.fds.get(fd);
    const kernelFdKind = dv.getUint32(off + MMAP.kind, true);
    if (!info && kernelFdKind !== 0) {
      info = { kind: kernelKind(kernelFdKind), vm: null, vcpu: null };
      p.fds.set(fd, info);
    }
    if (info?.kind !== 'vcpu') return;
    // mmap failed: the return value is -errno (top page of the address space).
    if (dv.getUint32(off + MMAP.addr + 4, true) === 0xffffffff && dv.getUint32(off + MMAP.addr, true) >= 0xfffff001) return;
    if (u64n(dv, off + MMAP.pgoff) !== 0) return; // the kvm_run page is at file offset 0
    const run = userAddrSeen(p, fd, info.vcpu, hex64(dv, off + MMAP.addr), u64n(dv, off + MMAP.len));
    if (run) this.emit(run);
  }

  private exitEvent(dv: DataView, off: number, len: number): void {
    if (len < EXIT.size) {
      this.stats.rejected++;
      return;
    }
    const pid = dv.getUint32(off + HDR.pid, true);
    const p = this.procs.remove(pid);
    if (!p) return;
    const ts = u64n(dv, off + HDR.ts_ns);
    const tid = dv.getUint32(off + HDR.tid, true);
    this.flushRuns(p);
    for (const [fd, info] of p.fds) {
      this.emit({ type: 'fd', ts_ns: ts, pid, tid, op: 'leak', fd, fd_kind: info.kind, vm: info.vm, vcpu: info.vcpu });
    }
    this.comms.forgetProcess(pid);
  }

  private copyEvent(dv: DataView, off: number, len: number): void {
    if (len < COPY.size) {
      this.stats.rejected++;
      return;
    }
    const pid = dv.getUint32(off + HDR.pid, true);
    const fd = dv.getInt32(off + COPY.fd, true);
    const info = this.procs.get(pid).fds.get(fd);
    const c = this.cmds.get(dv.getUint32(off + COPY.cmd, true), info?.kind ?? 'unknown');
    const rec: CopyRecord = {
      type: 'copy',
      ts_ns: u64n(dv, off + HDR.ts_ns),
      pid,
      tid: dv.getUint32(off + HDR.tid, true),
      dir: dv.getUint32(off + COPY.dir, true) === KT_COPY_TO_USER ? 'to_user' : 'from_user',
      addr: hex64(dv, off + COPY.uaddr),
      len: u64n(dv, off + COPY.len),
      cmd: c.cmdHex,
      name: c.name,
      fd,
      hook: hookName(dv.getUint32(off + COPY.hook, true)),
    };
    this.emit(rec);
  }

  private drainAfter(): void {
    const q = this.emitAfter;
    if (q.length === 0) return;
    for (let i = 0; i < q.length; i++) this.emit(q[i]);
    q.length = 0;
  }
}
