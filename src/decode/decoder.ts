/**
 * The decoder: one call per raw ring-buffer record (kt_* of bpf/kvm_trace.h) → zero or more JSONL records
 * (src/decode/records.ts) handed to `emit`. It names each ioctl from the table, decodes its argument
 * generically from the kernel's BTF, decodes KVM_RUN exits from the kvm_run snapshot, tracks per process
 * which fds are /dev/kvm, VM, vCPU and device fds (and their VM index / vCPU id), and joins each vCPU's
 * kvm_run user address (mmap) with its kernel address (KVM_RUN) into kvm_run records (kvm-run-join.ts).
 *
 * Hot path: KVM_RUN records do no BTF walk and no table lookup beyond one Map hit (per-request info and
 * per-struct decoders are compiled once); with `lean`, KVM_RUN exits carry only {reason, code}.
 * A bad record never stops decoding: one shorter than its struct (or its declared data), of an unknown
 * type, or on which any stage throws — this decoder, the argument and exit decoders, or whatever `emit`
 * runs (analysis, sinks) — is skipped and counted in `errors` (decode-errors.ts: by cause, the first few
 * with a hex dump), and the next record decodes as if it had not been there.
 */
import type { Btf } from '../btf/index.js';
import { kernelBtf } from '../btf/kernel.js';
import { errnoName } from '../ffi/errors.js';
import { BtfArgsDecoder } from './btf-args.js';
import {
  COPY,
  HDR,
  IOCTL,
  KT_COPY_TO_USER,
  KT_EV_COPY,
  KT_EV_EXIT,
  KT_EV_FD,
  KT_EV_FORK,
  KT_EV_IOCTL,
  KT_EV_MMAP,
  KT_EV_THREAD_EXIT,
  KT_F_NO_ENTER,
  KT_F_HW,
  KT_F_RUN,
  MIN_LEN,
} from '../bpf/event-layout.js';
import { COPY_HOOKS } from '../bpf/programs.js';
import { hex64, s64n, u64n } from '../cdata/values.js';
import { KVM_EXIT } from '../kvm/abi/exit-reasons.generated.js';
import { exitReasonName } from '../kvm/abi/ioctl-table.js';
import { CommCache } from './comm-cache.js';
import { DecodeErrors, errorLine, type DecodeErrorSample } from './decode-errors.js';
import { ExitDecoder } from './exit.js';
import { FdLifecycle, kernelKind, type LifecycleHooks } from './fd-lifecycle.js';
import { CmdTable, decodeArgs, type CmdInfo } from './ioctl-args.js';
import { kernelAddrSeen, unjoinedRuns } from './kvm-run-join.js';
import { ProcessTable, pidsWithKvmFds, type FdInfo, type ProcessState, type SeedResult } from './processes.js';
import type { CopyRecord, FdKind, FdRecord, IoctlRecord, TraceRecord } from './records.js';

export interface DecoderOptions extends LifecycleHooks {
  /** Where decoded records go (called synchronously from decode()); a throw skips the record, counted. */
  emit: (record: TraceRecord) => void;
  /** BTF to decode arguments and kvm_run with; default: the running kernel's. */
  btf?: Btf;
  /** Skip `args` of every ioctl and exit details of KVM_RUN (reason and code only): fastest decoding. */
  lean?: boolean;
  /** Told about each of the first `errorSamples` bad records (type, cause, hex dump) as it happens. */
  onDecodeError?: (sample: DecodeErrorSample) => void;
  /** Bad records kept as samples (default 5). */
  errorSamples?: number;
  /** Told about every bad record (the fuzzer's findings); costs a hex dump per bad record. */
  onEveryDecodeError?: (sample: DecodeErrorSample) => void;
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
  /** KVM_RUN records counted with the hardware-exit hooks (KT_F_HW), and the hardware exits they carried. */
  hwRuns: number;
  hwExits: number;
  /** Records on which a stage threw (skipped). */
  threw: number;
}

/** KVM_EXIT_INTR: the exit reason KVM sets when KVM_RUN returns -EINTR (a signal is pending). */
const EXIT_INTR = KVM_EXIT.INTR;
/** kvm_create_device.flags bit: only test whether the device type exists, create nothing. */
const KVM_CREATE_DEVICE_TEST = 1;

/** enum kt_copy_hook → the kernel function the copy was seen in. */
const HOOK_NAMES = new Map(COPY_HOOKS.map((h) => [h.id, h.hook]));
const hookName = (id: number): string => HOOK_NAMES.get(id) ?? `hook_${id}`;

export class Decoder {
  readonly stats: DecoderStats = { events: 0, ioctls: 0, unknownIoctls: 0, rejected: 0, unknownTypes: 0, threw: 0, hwRuns: 0, hwExits: 0 };
  readonly procs = new ProcessTable();
  /** Every bad record (short, unknown type, a stage threw): counted, the first few kept. */
  readonly errors: DecodeErrors;
  private readonly emit: (r: TraceRecord) => void;
  private readonly lifecycle: FdLifecycle;
  private readonly lean: boolean;
  private readonly cmds: CmdTable;
  private readonly exits: Pick<ExitDecoder, 'decode' | 'reasonName'>;
  private readonly comms = new CommCache();

  constructor(opts: DecoderOptions) {
    const btf = opts.btf ?? kernelBtf();
    const args = new BtfArgsDecoder(btf);
    this.emit = opts.emit;
    this.lean = opts.lean ?? false;
    this.errors = new DecodeErrors(opts.errorSamples ?? 5, opts.onDecodeError, opts.onEveryDecodeError);
    this.lifecycle = new FdLifecycle(this.procs, this.comms, this.emit, opts);
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

  /** Decode one raw record (`len` bytes at `off` of `dv`, e.g. straight from the ring). Never throws. */
  decode(dv: DataView, off: number, len: number): void {
    this.stats.events++;
    try {
      this.dispatch(dv, off, len);
    } catch (e) {
      this.emitAfter.length = 0; // what the failed record queued must not leak into the next one
      this.stats.threw++;
      this.errors.add('threw', errorLine(e), dv, off, len, e);
    }
  }

  private dispatch(dv: DataView, off: number, len: number): void {
    if (len < HDR.size) return this.reject(dv, off, len, `shorter than the ${HDR.size}-byte record header`);
    const type = dv.getUint16(off + HDR.type, true);
    const min = MIN_LEN[type];
    if (min === undefined) {
      this.stats.unknownTypes++;
      this.errors.add('unknown_type', `unknown record type ${type}`, dv, off, len);
      return;
    }
    if (len < min) return this.reject(dv, off, len, `shorter than its struct (${min} bytes)`);
    switch (type) {
      case KT_EV_IOCTL:
        return this.ioctl(dv, off, len);
      case KT_EV_FD:
        return this.lifecycle.fd(dv, off);
      case KT_EV_MMAP:
        return this.lifecycle.mmap(dv, off);
      case KT_EV_EXIT:
        return this.lifecycle.exit(dv, off);
      case KT_EV_THREAD_EXIT:
        return this.lifecycle.threadExit(dv, off);
      case KT_EV_FORK:
        return this.lifecycle.fork(dv, off);
      case KT_EV_COPY:
        return this.copyEvent(dv, off);
    }
  }

  private reject(dv: DataView, off: number, len: number, why: string): void {
    this.stats.rejected++;
    this.errors.add('short', why, dv, off, len);
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

  /** End of trace: emit the kvm_run records not emitted yet (one address still unknown). Never throws. */
  finish(): void {
    for (const p of this.procs.all()) {
      for (const r of unjoinedRuns(p)) {
        try {
          this.emit(r);
        } catch (e) {
          this.stats.threw++;
          this.errors.add('threw', `${errorLine(e)} (kvm_run record of pid ${r.pid} at the end of the trace)`, undefined, 0, 0);
        }
      }
    }
  }

  // --- ioctl ------------------------------------------------------------------------------------------

  private ioctl(dv: DataView, off: number, len: number): void {
    const inLen = dv.getUint16(off + IOCTL.in_len, true);
    const outLen = dv.getUint16(off + IOCTL.out_len, true);
    if (len < IOCTL.data + inLen + outLen) {
      return this.reject(dv, off, len, `shorter than its data (in_len ${inLen} + out_len ${outLen})`);
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
      if (flags & KT_F_HW) this.hardwareExits(r, dv, off);
    } else if (!this.lean) {
      decodeArgs(c, r, dv, off + IOCTL.arg, flags, inOff, inLen, outOff, outLen);
    }

    if (c.creates !== null && ret >= 0) this.created(proc, c, fd, ret, dv, off, outOff, outLen, r);
    this.emit(r);
    this.drainAfter();
  }

  /**
   * KVM_RUN counted with the hardware-exit hooks: its in-kernel exits and time split — once the kernel has
   * shown it emits kvm:kvm_exit at all (a KVM_RUN that entered the guest passes at least one). Until then (and
   * on kernels where it never fires, like PVM) the fields are left out rather than reading 0.
   */
  private hardwareExits(r: IoctlRecord, dv: DataView, off: number): void {
    const n = dv.getUint32(off + IOCTL.hw_exits, true);
    this.stats.hwRuns++;
    this.stats.hwExits += n;
    if (this.stats.hwExits === 0) return;
    const guest = u64n(dv, off + IOCTL.guest_ns);
    r.hw_exits = n;
    r.guest_ns = guest;
    r.kvm_ns = Math.max(0, r.latency_ns - guest);
  }

  /** KVM_CREATE_VM / _VCPU / _DEVICE succeeded: register the new fd and emit its open record. */
  private created(p: ProcessState, c: CmdInfo, fd: number, ret: number, dv: DataView, off: number, outOff: number, outLen: number, r: IoctlRecord): void {
    let newFd = ret;
    let info: FdInfo;
    // A new fd: whatever this number was before is gone (a close we did not see).
    if (c.creates === 'vm') {
      p.closeFd(ret);
      info = p.addVm(ret);
    } else if (c.creates === 'vcpu') {
      info = { kind: 'vcpu', vm: p.vmOf(fd), vcpu: u64n(dv, off + IOCTL.arg) };
      p.closeFd(ret);
      p.fds.set(ret, info);
    } else {
      // KVM_CREATE_DEVICE returns 0; the new fd is kvm_create_device.fd in the out data.
      const at = c.createdFdOffset;
      const fl = c.createdFlagsOffset;
      if (at === undefined || outLen < at + 4) return;
      if (fl !== undefined && outLen >= fl + 4 && dv.getUint32(outOff + fl, true) & KVM_CREATE_DEVICE_TEST) return;
      newFd = dv.getInt32(outOff + at, true);
      info = { kind: 'device', vm: p.vmOf(fd), vcpu: null };
      p.closeFd(newFd);
      p.fds.set(newFd, info);
    }
    const rec: FdRecord = { type: 'fd', ts_ns: r.ts_ns, pid: r.pid, tid: r.tid, op: 'open', fd: newFd, fd_kind: info.kind, vm: info.vm, vcpu: info.vcpu, ret: newFd };
    this.emitAfter.push(rec);
  }

  /** Records produced while building an ioctl record, emitted right after it (open of a created fd). */
  private readonly emitAfter: TraceRecord[] = [];

  // --- other record types ---------------------------------------------------------------------------

  private copyEvent(dv: DataView, off: number): void {
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
