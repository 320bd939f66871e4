/**
 * The fd lifecycle records of the decoder: which fds of a process are /dev/kvm, VM, vCPU and device fds,
 * followed through everything that makes or ends one — open, close, dup/dup2/dup3/fcntl(F_DUPFD*),
 * close_range, the O_CLOEXEC fds an execve closes, a fork's copies, thread and process exit — and each
 * vCPU fd's kvm_run mapping (mmap at offset 0). The kernel side decides which fds are KVM fds (it keeps
 * the same table in its `fds` map); this side keeps VM indices and vCPU ids with them and emits one
 * `fd` record per change (records.ts: op open/close/leak, `via` for the indirect ones).
 *
 * Record lengths are checked by the caller (decoder.ts) against MIN_LEN before these run.
 */
import { constants } from 'node:os';
import {
  FD,
  FORK,
  HDR,
  KT_FD_CLOSE_RANGE,
  KT_FD_DUP,
  KT_FD_EXEC_CLOSE,
  KT_FD_OPEN,
  MMAP,
} from '../bpf/event-layout.js';
import { hex64, u64n } from '../cdata/values.js';
import type { CommCache } from './comm-cache.js';
import { unjoinedRuns, userAddrSeen } from './kvm-run-join.js';
import type { FdInfo, ProcessState, ProcessTable } from './processes.js';
import type { FdKind, FdRecord, TraceRecord } from './records.js';

const EBADF = constants.errno.EBADF;
const KERNEL_KINDS: FdKind[] = ['unknown', 'system', 'vm', 'vcpu', 'device'];

/** enum kt_fd_kind → FdKind ('unknown' for anything out of range). */
export const kernelKind = (k: number): FdKind => KERNEL_KINDS[k] ?? 'unknown';

export interface LifecycleHooks {
  /** A traced process exited (after its leak records): analysis state keyed by it can go. */
  onProcessExit?: (pid: number) => void;
  /** A thread of a traced process exited (not the last one). */
  onThreadExit?: (pid: number, tid: number) => void;
}

type FdBase = Pick<FdRecord, 'type' | 'ts_ns' | 'pid' | 'tid'>;

export class FdLifecycle {
  constructor(
    private readonly procs: ProcessTable,
    private readonly comms: CommCache,
    private readonly emit: (r: TraceRecord) => void,
    private readonly hooks: LifecycleHooks = {},
  ) {}

  /** kt_fd_event: open of /dev/kvm, close, dup, close_range, execve's close of an O_CLOEXEC fd. */
  fd(dv: DataView, off: number): void {
    const pid = dv.getUint32(off + HDR.pid, true);
    const fd = dv.getInt32(off + FD.fd, true);
    const ret = dv.getInt32(off + FD.ret, true);
    const op = dv.getUint32(off + FD.op, true);
    const kernel = kernelKind(dv.getUint32(off + FD.kind, true));
    const p = this.procs.get(pid);
    const base: FdBase = { type: 'fd', ts_ns: u64n(dv, off + HDR.ts_ns), pid, tid: dv.getUint32(off + HDR.tid, true) };
    switch (op) {
      case KT_FD_OPEN: {
        if (ret < 0) return; // a failed open creates no fd (the BPF side does not send these)
        p.closeFd(ret); // a close we did not see (lost record): the number is another file now
        const info: FdInfo = { kind: kernel === 'unknown' ? 'system' : kernel, vm: null, vcpu: null };
        p.fds.set(ret, info);
        this.emit({ ...base, op: 'open', fd: ret, fd_kind: info.kind, vm: null, vcpu: null, ret });
        return;
      }
      case KT_FD_DUP:
        return this.dup(p, base, fd, ret, kernel);
      case KT_FD_CLOSE_RANGE:
      case KT_FD_EXEC_CLOSE: {
        const info = p.closeFd(fd) ?? { kind: kernel, vm: null, vcpu: null };
        this.emit(closeRecord(base, fd, info, { ret, via: op === KT_FD_EXEC_CLOSE ? 'execve' : 'close_range' }));
        return;
      }
      default: {
        // KT_FD_CLOSE (and, read as a close, an op this decoder does not know: the kernel forgot the fd).
        const info = p.fds.get(fd) ?? { kind: kernel, vm: null, vcpu: null };
        if (ret !== -EBADF) p.closeFd(fd); // close releases the fd even when it reports an error, except EBADF
        this.emit(closeRecord(base, fd, info, { ret }));
      }
    }
  }

  /** dup family: `newFd` now refers to `oldFd`'s file; whatever `newFd` was is closed. */
  private dup(p: ProcessState, base: FdBase, oldFd: number, newFd: number, kernel: FdKind): void {
    if (newFd < 0 || newFd === oldFd) return;
    const replaced = p.fds.get(newFd);
    if (replaced) this.emit(closeRecord(base, newFd, replaced, { ret: 0, via: 'dup2' }));
    const src = p.fds.get(oldFd) ?? (kernel !== 'unknown' ? { kind: kernel, vm: null, vcpu: null } : undefined);
    if (!src) {
      p.closeFd(newFd); // an untracked file replaced a tracked fd
      return;
    }
    p.dupFd(oldFd, newFd, src);
    this.emit({ ...base, op: 'open', fd: newFd, fd_kind: src.kind, vm: src.vm, vcpu: src.vcpu, ret: newFd, via: 'dup', dup_of: oldFd });
  }

  /** kt_mmap_event: a vCPU fd mapped at file offset 0 is its kvm_run. */
  mmap(dv: DataView, off: number): void {
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

  /** kt_fork_event: the child holds copies of the parent's KVM fds. */
  fork(dv: DataView, off: number): void {
    const parent = dv.getUint32(off + HDR.pid, true);
    const child = dv.getUint32(off + FORK.child_pid, true);
    if (child === parent) return;
    const c = this.procs.fork(parent, child);
    const base: FdBase = { type: 'fd', ts_ns: u64n(dv, off + HDR.ts_ns), pid: child, tid: child };
    for (const [fd, info] of c.fds) {
      this.emit({ ...base, op: 'open', fd, fd_kind: info.kind, vm: info.vm, vcpu: info.vcpu, ret: fd, via: 'fork', parent });
    }
  }

  /** kt_exit_event: the process exited; what it never closed is reported as leaked. */
  exit(dv: DataView, off: number): void {
    const pid = dv.getUint32(off + HDR.pid, true);
    const p = this.procs.remove(pid);
    this.comms.forgetProcess(pid);
    this.hooks.onProcessExit?.(pid);
    if (!p) return;
    const ts = u64n(dv, off + HDR.ts_ns);
    const tid = dv.getUint32(off + HDR.tid, true);
    for (const r of unjoinedRuns(p)) this.emit(r);
    for (const [fd, info] of p.fds) {
      this.emit({ type: 'fd', ts_ns: ts, pid, tid, op: 'leak', fd, fd_kind: info.kind, vm: info.vm, vcpu: info.vcpu });
    }
  }

  /** kt_exit_event as KT_EV_THREAD_EXIT: one thread of a traced process exited. */
  threadExit(dv: DataView, off: number): void {
    const pid = dv.getUint32(off + HDR.pid, true);
    const tid = dv.getUint32(off + HDR.tid, true);
    this.comms.forgetThread(tid);
    this.hooks.onThreadExit?.(pid, tid);
  }
}

/** The close record of `fd` (what it was: `info`). */
function closeRecord(base: FdBase, fd: number, info: FdInfo, extra: Pick<FdRecord, 'ret' | 'via'>): FdRecord {
  const r: FdRecord = { ...base, op: 'close', fd, fd_kind: info.kind, vm: info.vm, vcpu: info.vcpu, ret: extra.ret };
  if (extra.via) r.via = extra.via;
  return r;
}
