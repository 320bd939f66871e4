/**
 * Per-thread comm strings for the decoder's hot path: a record carries its thread's 16 comm bytes, and
 * building a string from them on every record costs more than comparing four words, so each thread's
 * string is rebuilt only when its bytes change. Entries leave with their thread (thread-exit record) or
 * process (exit record); past `maxThreads` the oldest entry goes too, so the cache is bounded either way.
 */
import { KT_TASK_COMM_LEN } from '../bpf/event-layout.js';
import { cstr } from '../cdata/values.js';

interface CommEntry {
  pid: number;
  w0: number;
  w1: number;
  w2: number;
  w3: number;
  s: string;
}

export class CommCache {
  private readonly byTid = new Map<number, CommEntry>();

  constructor(private readonly maxThreads = 65536) {}

  get size(): number {
    return this.byTid.size;
  }

  /** comm of thread `tid` (of process `pid`) from the 16 bytes at `at`. */
  get(dv: DataView, at: number, pid: number, tid: number): string {
    const w0 = dv.getUint32(at, true);
    const w1 = dv.getUint32(at + 4, true);
    const w2 = dv.getUint32(at + 8, true);
    const w3 = dv.getUint32(at + 12, true);
    const e = this.byTid.get(tid);
    if (e && e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3) return e.s;
    const s = cstr(dv, at, KT_TASK_COMM_LEN);
    if (!e && this.byTid.size >= this.maxThreads) this.byTid.delete(this.byTid.keys().next().value!);
    this.byTid.set(tid, { pid, w0, w1, w2, w3, s });
    return s;
  }

  /** Forget thread `tid` (it exited). */
  forgetThread(tid: number): void {
    this.byTid.delete(tid);
  }

  /** Forget every thread of process `pid` (it exited). */
  forgetProcess(pid: number): void {
    for (const [t, e] of this.byTid) if (e.pid === pid) this.byTid.delete(t);
  }
}
