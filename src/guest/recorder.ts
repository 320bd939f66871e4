/**
 * The ground-truth recorder: a KvmObserver that keeps what one thread's KVM handles did. Ordinary ioctls,
 * fd opens/closes and kvm_run mappings become records; KVM_RUN calls (up to hundreds of thousands) go into
 * growable typed-array columns instead of objects, so logging barely slows the loop. Each worker has one;
 * the main thread merges them into the JSONL file at the end (log-writer.ts).
 */
import { errnoName } from '../ffi/errors.js';
import { cmdHex } from '../kvm/abi/ioc.js';
import { ioctlByName, type FdKind } from '../kvm/abi/ioctl-table.js';
import { currentTid, type IoctlCall, type KvmObserver } from '../kvm/observer.js';
import type { GtBuffer, GtFdRecord, GtIoctlRecord, GtKvmRunRecord, GtRecord } from './records.js';

const KVM_RUN_CMD = ioctlByName('KVM_RUN').cmd;

/** KVM_RUN calls of one thread as columns (structured-cloneable, so a worker can post them). */
export interface RunColumns {
  tid: number;
  n: number;
  t0: BigInt64Array;
  t1: BigInt64Array;
  ret: Int32Array;
  fd: Int32Array;
  vcpu: Int32Array;
}

/** What a recorder hands to the log writer. */
export interface RecordedLog {
  records: GtRecord[];
  runs: RunColumns;
}

export class GroundTruthRecorder implements KvmObserver {
  readonly records: GtRecord[] = [];
  #runs: RunColumns;
  #last: GtIoctlRecord | null = null;

  /** `runCapacity`: KVM_RUN calls to make room for up front (the columns grow when exceeded). */
  constructor(runCapacity = 1024) {
    this.#runs = columns(currentTid(), Math.max(16, runCapacity));
  }

  ioctl(c: Readonly<IoctlCall>): void {
    if (c.cmd === KVM_RUN_CMD) {
      let r = this.#runs;
      if (r.n === r.t0.length) r = this.#runs = grow(r);
      const i = r.n++;
      r.t0[i] = c.t0;
      r.t1[i] = c.t1;
      r.ret[i] = c.ret;
      r.fd[i] = c.fd;
      r.vcpu[i] = c.vcpu ?? -1;
      return;
    }
    const rec: GtIoctlRecord = {
      type: 'ioctl',
      t0_ns: Number(c.t0),
      t1_ns: Number(c.t1),
      tid: c.tid,
      fd: c.fd,
      fd_kind: c.fdKind,
      cmd: cmdHex(c.cmd),
      name: c.name,
      arg: `0x${BigInt.asUintN(64, c.arg).toString(16)}`,
      size: c.size,
      ret: c.ret,
      errno: c.errno ? errnoName(c.errno) : null,
      vcpu: c.vcpu,
    };
    this.records.push(rec);
    this.#last = rec;
  }

  fd(op: 'open' | 'close', fd: number, kind: FdKind, vcpu: number | null, tNs: bigint): void {
    const rec: GtFdRecord = { type: 'fd', op, t_ns: Number(tNs), tid: currentTid(), fd, fd_kind: kind, vcpu };
    this.records.push(rec);
  }

  kvmRun(vcpu: number, fd: number, userAddr: bigint, mmapSize: number): void {
    const rec: GtKvmRunRecord = { type: 'kvm_run', vcpu, fd, tid: currentTid(), user_addr: `0x${userAddr.toString(16)}`, mmap_size: mmapSize };
    this.records.push(rec);
  }

  /** Attach the placed buffers of the layout scenario to the ioctl just recorded (which must be `name`). */
  annotateLast(name: string, buffers: GtBuffer[]): void {
    if (!this.#last || this.#last.name !== name) throw new Error(`layout: last recorded ioctl is not ${name}`);
    this.#last.buffers = buffers;
  }

  /** Everything recorded, KVM_RUN columns trimmed to their length. */
  export(): RecordedLog {
    const r = this.#runs;
    const trim: RunColumns = {
      tid: r.tid,
      n: r.n,
      t0: r.t0.slice(0, r.n),
      t1: r.t1.slice(0, r.n),
      ret: r.ret.slice(0, r.n),
      fd: r.fd.slice(0, r.n),
      vcpu: r.vcpu.slice(0, r.n),
    };
    return { records: this.records, runs: trim };
  }
}

function columns(tid: number, cap: number): RunColumns {
  return {
    tid,
    n: 0,
    t0: new BigInt64Array(cap),
    t1: new BigInt64Array(cap),
    ret: new Int32Array(cap),
    fd: new Int32Array(cap),
    vcpu: new Int32Array(cap),
  };
}

function grow(r: RunColumns): RunColumns {
  const g = columns(r.tid, r.t0.length * 2);
  g.n = r.n;
  g.t0.set(r.t0);
  g.t1.set(r.t1);
  g.ret.set(r.ret);
  g.fd.set(r.fd);
  g.vcpu.set(r.vcpu);
  return g;
}
