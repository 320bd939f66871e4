// The decoder's fd table through everything that makes or ends a KVM fd besides open/close (issue 10):
// dup family, dup2 onto a tracked number, close_range, execve's close of O_CLOEXEC fds, fork, a vCPU fd
// number reused after close, thread and process exit — from raw records as the BPF side writes them.
// (test/fd-lifecycle.test.ts runs the same cases against the real kernel with a small C VMM.)
import { describe, expect, it } from 'vitest';
import {
  KT_FD_CLOSE,
  KT_FD_CLOSE_RANGE,
  KT_FD_DUP,
  KT_FD_EXEC_CLOSE,
  KT_FD_OPEN,
  KT_FD_SYSTEM,
  KT_FD_UNKNOWN,
  KT_FD_VCPU,
  KT_FD_VM,
  KT_F_RUN,
  KT_RUN_SNAP,
} from '../src/bpf/event-layout.js';
import { Decoder } from '../src/decode/decoder.js';
import { ProcessTable } from '../src/decode/processes.js';
import type { FdRecord, KvmRunRecord, TraceRecord } from '../src/decode/records.js';
import { encodeExit, encodeFd, encodeFork, encodeIoctl, encodeMmap } from './helpers/kt-records.js';
import { cmdOf } from './decode-helpers.js';

const PID = 500;
const CHILD = 501;

/** A decoder fed a VMM's start: /dev/kvm on 3, VM on 4, vCPU 0 on 5 mapped at 0x7f00_0000_0000 and run once. */
class Vmm {
  readonly out: TraceRecord[] = [];
  readonly threadExits: Array<[number, number]> = [];
  readonly processExits: number[] = [];
  readonly decoder = new Decoder({
    emit: (r) => this.out.push(r),
    onThreadExit: (pid, tid) => this.threadExits.push([pid, tid]),
    onProcessExit: (pid) => this.processExits.push(pid),
  });
  private t = 1_000;

  constructor() {
    this.feed(encodeFd({ ts_ns: this.ts(), pid: PID, fd: 3, op: KT_FD_OPEN, kind: KT_FD_SYSTEM }));
    this.ioctl(3, 'KVM_CREATE_VM', { ret: 4 });
    this.ioctl(4, 'KVM_CREATE_VCPU', { arg: 0, ret: 5 });
    this.mmap(5, 0x7f0000000000n);
    this.run(5, 0xffff888000100000n);
  }

  ts(): number {
    return (this.t += 10);
  }

  feed(raw: Uint8Array): TraceRecord[] {
    const start = this.out.length;
    this.decoder.decode(new DataView(raw.buffer, raw.byteOffset, raw.byteLength), 0, raw.length);
    return this.out.slice(start);
  }

  ioctl(fd: number, name: string, init: { ret?: number; arg?: number; pid?: number } = {}): TraceRecord[] {
    return this.feed(encodeIoctl({ ts_ns: this.ts(), enter_ns: this.t - 5, pid: init.pid ?? PID, fd, cmd: cmdOf(name), ret: init.ret ?? 0, arg: init.arg }));
  }

  run(fd: number, kaddr: bigint, pid = PID): TraceRecord[] {
    return this.feed(
      encodeIoctl({ ts_ns: this.ts(), enter_ns: this.t - 5, pid, tid: pid + 1, fd, cmd: cmdOf('KVM_RUN'), flags: KT_F_RUN, vcpu_id: 0, exit_reason: 5, run_kaddr: kaddr, out: new Uint8Array(KT_RUN_SNAP) }),
    );
  }

  mmap(fd: number, addr: bigint, kind = KT_FD_VCPU, pid = PID): TraceRecord[] {
    return this.feed(encodeMmap({ ts_ns: this.ts(), pid, fd, kind, addr, len: 12288 }));
  }

  fdOp(op: number, fd: number, ret: number, kind: number, pid = PID): TraceRecord[] {
    return this.feed(encodeFd({ ts_ns: this.ts(), pid, fd, op, kind, ret }));
  }

  fds(): FdRecord[] {
    return this.out.filter((r): r is FdRecord => r.type === 'fd');
  }

  runs(): KvmRunRecord[] {
    this.decoder.finish();
    return this.out.filter((r): r is KvmRunRecord => r.type === 'kvm_run');
  }

  exit(pid = PID): TraceRecord[] {
    return this.feed(encodeExit({ ts_ns: this.ts(), pid }));
  }

  leaks(): Array<[number, number, string]> {
    return this.fds()
      .filter((r) => r.op === 'leak')
      .map((r) => [r.pid, r.fd, r.fd_kind]);
  }
}

const brief = (rs: TraceRecord[]) =>
  rs.filter((r): r is FdRecord => r.type === 'fd').map((r) => ({ op: r.op, fd: r.fd, kind: r.fd_kind, via: r.via, dup_of: r.dup_of, vcpu: r.vcpu }));

describe('fd lifecycle in the decoder', () => {
  it('dup of a vCPU fd: the copy is the same vCPU and kvm_run; closing the original leaves the copy', () => {
    const v = new Vmm();
    expect(brief(v.fdOp(KT_FD_DUP, 5, 9, KT_FD_VCPU))).toEqual([{ op: 'open', fd: 9, kind: 'vcpu', via: 'dup', dup_of: 5, vcpu: 0 }]);
    v.fdOp(KT_FD_CLOSE, 5, 0, KT_FD_VCPU);
    const run = v.run(9, 0xffff888000100000n).find((r) => r.type === 'ioctl');
    expect(run).toMatchObject({ fd: 9, fd_kind: 'vcpu', vcpu: 0, vm: 0 });
    // One kvm_run record for the one vCPU: the copy shares it, nothing half-known is left for the end.
    expect(v.runs()).toEqual([{ type: 'kvm_run', pid: PID, vcpu: 0, fd: 5, kernel_addr: '0xffff888000100000', user_addr: '0x7f0000000000', mmap_size: 12288 }]);
    v.exit();
    expect(v.leaks()).toEqual([
      [PID, 3, 'system'],
      [PID, 4, 'vm'],
      [PID, 9, 'vcpu'],
    ]);
  });

  it('dup2 of an unrelated file onto the vCPU number: closed, and a later offset-0 mmap there is no kvm_run', () => {
    const v = new Vmm();
    // The kernel side reports the replaced number with kind UNKNOWN (the old fd is not a KVM fd).
    expect(brief(v.fdOp(KT_FD_DUP, 20, 5, KT_FD_UNKNOWN))).toEqual([{ op: 'close', fd: 5, kind: 'vcpu', via: 'dup2', dup_of: undefined, vcpu: 0 }]);
    expect(v.mmap(5, 0x7f1111110000n, KT_FD_UNKNOWN)).toEqual([]);
    expect(v.runs().map((r) => r.user_addr)).toEqual(['0x7f0000000000']);
    v.exit();
    expect(v.leaks().map((l) => l[1])).toEqual([3, 4]);
  });

  it('dup2 of a tracked fd onto another tracked one: the replaced one closes, the copy opens', () => {
    const v = new Vmm();
    expect(brief(v.fdOp(KT_FD_DUP, 4, 5, KT_FD_VM))).toEqual([
      { op: 'close', fd: 5, kind: 'vcpu', via: 'dup2', dup_of: undefined, vcpu: 0 },
      { op: 'open', fd: 5, kind: 'vm', via: 'dup', dup_of: 4, vcpu: null },
    ]);
    // KVM_CREATE_VCPU on the copy belongs to the same VM (index 0).
    expect(v.ioctl(5, 'KVM_CREATE_VCPU', { arg: 1, ret: 6 }).find((r) => r.type === 'fd')).toMatchObject({ fd: 6, fd_kind: 'vcpu', vm: 0, vcpu: 1 });
  });

  it('close_range closes each tracked fd in the range, with via', () => {
    const v = new Vmm();
    expect(brief([...v.fdOp(KT_FD_CLOSE_RANGE, 4, 0, KT_FD_VM), ...v.fdOp(KT_FD_CLOSE_RANGE, 5, 0, KT_FD_VCPU)])).toEqual([
      { op: 'close', fd: 4, kind: 'vm', via: 'close_range', dup_of: undefined, vcpu: null },
      { op: 'close', fd: 5, kind: 'vcpu', via: 'close_range', dup_of: undefined, vcpu: 0 },
    ]);
    v.exit();
    expect(v.leaks()).toEqual([[PID, 3, 'system']]);
  });

  it("execve's close of O_CLOEXEC fds; what survives is still tracked", () => {
    const v = new Vmm();
    v.fdOp(KT_FD_EXEC_CLOSE, 4, 0, KT_FD_VM);
    v.fdOp(KT_FD_EXEC_CLOSE, 5, 0, KT_FD_VCPU);
    expect(v.fds().filter((r) => r.via === 'execve').map((r) => [r.fd, r.fd_kind])).toEqual([
      [4, 'vm'],
      [5, 'vcpu'],
    ]);
    v.exit();
    expect(v.leaks()).toEqual([[PID, 3, 'system']]);
  });

  it("fork: the child holds copies (its own leaks at its exit), the parent's fds are untouched", () => {
    const v = new Vmm();
    const opened = v.feed(encodeFork({ ts_ns: v.ts(), pid: PID, child_pid: CHILD }));
    expect(opened.map((r) => r.type === 'fd' && [r.pid, r.op, r.fd, r.fd_kind, r.via, r.parent])).toEqual([
      [CHILD, 'open', 3, 'system', 'fork', PID],
      [CHILD, 'open', 4, 'vm', 'fork', PID],
      [CHILD, 'open', 5, 'vcpu', 'fork', PID],
    ]);
    // The child's KVM_CREATE_VCPU on its copy of the VM fd: same VM index as in the parent.
    expect(v.ioctl(4, 'KVM_CREATE_VCPU', { pid: CHILD, arg: 3, ret: 7 }).find((r) => r.type === 'fd')).toMatchObject({ pid: CHILD, fd: 7, vm: 0, vcpu: 3 });
    v.fdOp(KT_FD_CLOSE, 5, 0, KT_FD_VCPU, CHILD);
    v.exit(CHILD);
    expect(v.leaks()).toEqual([
      [CHILD, 3, 'system'],
      [CHILD, 4, 'vm'],
      [CHILD, 7, 'vcpu'],
    ]);
    // The parent's vCPU fd is still its own.
    expect(v.run(5, 0xffff888000100000n).find((r) => r.type === 'ioctl')).toMatchObject({ fd_kind: 'vcpu', vcpu: 0 });
    v.exit();
    expect(v.leaks().filter((l) => l[0] === PID).map((l) => l[1])).toEqual([3, 4, 5]);
    expect(v.processExits).toEqual([CHILD, PID]);
  });

  it('a vCPU fd number reused after close: the new vCPU gets its own kvm_run record', () => {
    const v = new Vmm();
    v.fdOp(KT_FD_CLOSE, 5, 0, KT_FD_VCPU);
    v.ioctl(4, 'KVM_CREATE_VCPU', { arg: 1, ret: 5 });
    v.mmap(5, 0x7f2222220000n);
    v.run(5, 0xffff888000200000n);
    expect(v.runs().map((r) => [r.fd, r.kernel_addr, r.user_addr])).toEqual([
      [5, '0xffff888000100000', '0x7f0000000000'],
      [5, '0xffff888000200000', '0x7f2222220000'],
    ]);
  });

  it('a kvm_run half known when its fd closes is still reported at the end, not given to the next fd', () => {
    const v = new Vmm();
    v.ioctl(4, 'KVM_CREATE_VCPU', { arg: 1, ret: 6 });
    v.mmap(6, 0x7f3333330000n);
    v.fdOp(KT_FD_CLOSE, 6, 0, KT_FD_VCPU);
    v.ioctl(4, 'KVM_CREATE_VCPU', { arg: 2, ret: 6 });
    v.run(6, 0xffff888000300000n);
    expect(v.runs().map((r) => [r.vcpu, r.kernel_addr, r.user_addr])).toEqual([
      [0, '0xffff888000100000', '0x7f0000000000'],
      [1, null, '0x7f3333330000'],
      [0, '0xffff888000300000', null],
    ]);
  });

  it('thread and process exits reach the hooks (per-thread analysis state is evicted with them)', () => {
    const v = new Vmm();
    v.feed(encodeExit({ ts_ns: v.ts(), pid: PID, tid: PID + 1, thread: true }));
    expect(v.threadExits).toEqual([[PID, PID + 1]]);
    expect(v.fds().filter((r) => r.op === 'leak')).toEqual([]); // a thread exit is no process exit
    v.exit();
    expect(v.processExits).toEqual([PID]);
    expect(v.decoder.procs.size).toBe(0);
  });
});

describe('bounded process table', () => {
  it('drops the oldest states that know nothing past its limit, keeps those that hold fds', () => {
    const t = new ProcessTable(8);
    t.get(1).fds.set(3, { kind: 'system', vm: null, vcpu: null });
    for (let pid = 2; pid < 1000; pid++) t.get(pid);
    expect(t.size).toBeLessThanOrEqual(8);
    expect(t.evicted).toBeGreaterThan(980);
    expect(t.get(1).fds.size).toBe(1);
  });
});
