// Analyzer and decoder state stays bounded over a capture of any length (issue 10): per-thread state
// (comm cache, pending observed copies) leaves with its thread — the kernel reports the exit of every
// thread of a process holding KVM fds (KT_EV_THREAD_EXIT) — per-process state with its process, and
// caps bound what no exit record will ever clear.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { CopyJoiner, FlagAnalyzer } from '../src/analysis/flags.js';
import { CommCache } from '../src/decode/comm-cache.js';
import { Decoder } from '../src/decode/decoder.js';
import type { CopyRecord, TraceRecord } from '../src/decode/records.js';
import { RingBufferConsumer } from '../src/ringbuf/consumer.js';
import { KvmTracer } from '../src/bpf/tracer.js';
import { Kvm } from '../src/kvm/system.js';
import { bpfSkipReason } from './bpf-support.js';

const copy = (pid: number, tid: number, ts: number): CopyRecord => ({
  type: 'copy',
  ts_ns: ts,
  pid,
  tid,
  dir: 'from_user',
  addr: '0x1000',
  len: 8,
  cmd: '0x0',
  name: '',
  fd: 3,
});

describe('CopyJoiner', () => {
  it('drops a thread when it exits and a process with all its threads', () => {
    const j = new CopyJoiner();
    j.add(copy(1, 11, 1));
    j.add(copy(1, 12, 1));
    j.add(copy(2, 21, 1));
    j.forgetThread(11);
    expect(j.size).toBe(2);
    j.forgetProcess(1);
    expect(j.size).toBe(1);
    expect(j.dropped).toBe(2);
    expect(j.take({ tid: 21, enter_ns: 0, ts_ns: 5 })).toHaveLength(1);
  });

  it('holds at most `threads` threads: the oldest goes first', () => {
    const j = new CopyJoiner(16, 100);
    for (let tid = 0; tid < 10_000; tid++) j.add(copy(1, tid, 1));
    expect(j.size).toBe(100);
    expect(j.dropped).toBe(9_900);
    expect(j.take({ tid: 9_999, enter_ns: 0, ts_ns: 5 })).toHaveLength(1);
    expect(j.take({ tid: 0, enter_ns: 0, ts_ns: 5 })).toHaveLength(0);
  });

  it('FlagAnalyzer.forgetProcess drops pending copies and memory-slot sizes', () => {
    const a = new FlagAnalyzer({ types: { struct: () => undefined, type: () => undefined } as never });
    a.analyze(copy(7, 70, 1));
    a.slots.observe({ type: 'ioctl', name: 'KVM_SET_USER_MEMORY_REGION', ret: 0, pid: 7, vm: 0, args: { slot: 1, memory_size: 8192 } } as never);
    expect(a.slots.slotPages(7, 0, 1)).toBe(2);
    a.forgetProcess(7);
    expect(a.copies.size).toBe(0);
    expect(a.slots.slotPages(7, 0, 1)).toBeUndefined();
  });
});

describe('CommCache', () => {
  it('forgets a thread, a process, and holds at most maxThreads', () => {
    const c = new CommCache(50);
    const b = new Uint8Array(16);
    b.set(Buffer.from('vcpu'));
    const dv = new DataView(b.buffer);
    for (let tid = 1; tid <= 1000; tid++) expect(c.get(dv, 0, tid % 3, tid)).toBe('vcpu');
    expect(c.size).toBe(50);
    c.forgetThread(1000);
    expect(c.size).toBe(49);
    c.forgetProcess(0);
    expect(c.size).toBeLessThan(49);
  });
});

const skip = bpfSkipReason();
if (skip) console.log(`thread-exit test skipped: ${skip}`);

describe.skipIf(skip !== undefined)('thread exits from the real kernel', () => {
  it('a thread of a process holding a KVM fd exits: onThreadExit gets its tid; the process is not reported exited', async () => {
    const exits: Array<[number, number]> = [];
    const out: TraceRecord[] = [];
    const decoder = new Decoder({ emit: (r) => out.push(r), onThreadExit: (pid, tid) => exits.push([pid, tid]), onProcessExit: () => exits.push([-1, -1]) });
    const tracer = KvmTracer.open({ pids: [process.pid] });
    let ring: RingBufferConsumer | undefined;
    const kvm = Kvm.open(); // this process holds a KVM fd: its threads' exits are reported
    let workerTid = 0;
    try {
      ring = new RingBufferConsumer(tracer.ringMapFd, tracer.ringBytes, { onRecord: (v, o, l) => decoder.decode(v, o, l), intervalMs: 0, poll: false });
      // A plain thread of this process: it only reports its tid (gettid through koffi) and ends.
      const worker = new Worker(
        "const k = require('koffi'); const gettid = k.load('libc.so.6').func('int gettid()'); require('node:worker_threads').parentPort.postMessage(gettid());",
        { eval: true },
      );
      workerTid = await new Promise<number>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      await worker.terminate();
      // The OS thread is gone once terminate() resolved; give the kernel's exit a moment to reach the ring.
      for (let i = 0; i < 50 && !exits.some(([, t]) => t === workerTid); i++) {
        await new Promise((r) => setTimeout(r, 20));
        ring.flush();
      }
    } finally {
      kvm.close();
      ring?.close();
      tracer.close();
    }
    expect(workerTid).toBeGreaterThan(0);
    expect(exits).toContainEqual([process.pid, workerTid]);
    expect(exits).not.toContainEqual([-1, -1]);
    expect(decoder.errors.count).toBe(0);
  });
});
