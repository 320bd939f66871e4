// What leaves the decoder: the summary (bounded-memory latency histograms), the live line formatter and the
// JSONL file sink (batching, backpressure, drops counted, flushed on close).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { formatDuration, formatRecord } from '../src/decode/format.js';
import { JsonlSink } from '../src/decode/jsonl-sink.js';
import { recordJson } from '../src/decode/json.js';
import { Decoder } from '../src/decode/decoder.js';
import { decodeStream } from '../src/decode/stream.js';
import { frameRecords } from '../src/ringbuf/stream.js';
import { KT_FD_VCPU, KT_F_RUN, KT_RUN_SNAP } from '../src/bpf/event-layout.js';
import { encodeIoctl } from './helpers/kt-records.js';
import type { IoctlRecord, TraceRecord } from '../src/decode/records.js';
import { SummaryBuilder } from '../src/decode/summary.js';

const ioctl = (over: Partial<IoctlRecord>): IoctlRecord => ({
  type: 'ioctl',
  ts_ns: 2000,
  enter_ns: 1000,
  pid: 7,
  tid: 8,
  comm: 'vmm',
  fd: 12,
  fd_kind: 'vcpu',
  vm: 0,
  vcpu: 0,
  cmd: '0x4090ae82',
  name: 'KVM_SET_REGS',
  size: 144,
  dir: 'write',
  arg: '0x7ffd0000',
  ret: 0,
  errno: null,
  latency_ns: 3200,
  ...over,
});

describe('SummaryBuilder', () => {
  it('counts, latencies, errors, exits per vCPU, kvm_run, fds', () => {
    const s = new SummaryBuilder();
    const recs: TraceRecord[] = [
      ...Array.from({ length: 100 }, (_, i) =>
        ioctl({ name: 'KVM_RUN', latency_ns: 8000 + i, exit: { reason: i % 10 === 0 ? 'HLT' : 'IO', code: i % 10 === 0 ? 5 : 2 } }),
      ),
      ioctl({ name: 'KVM_RUN', vcpu: 1, latency_ns: 9000, exit: { reason: 'MMIO', code: 6 } }),
      ioctl({ name: 'KVM_SET_REGS', latency_ns: 3000 }),
      ioctl({ name: 'KVM_UNKNOWN_0x8091ae81', ret: -25, errno: 'ENOTTY', latency_ns: 900 }),
      ioctl({ name: 'KVM_GET_API_VERSION', latency_ns: 0, no_enter: true }),
      { type: 'fd', ts_ns: 1, pid: 7, tid: 7, op: 'open', fd: 3, fd_kind: 'system', vm: null, vcpu: null, ret: 3 },
      { type: 'fd', ts_ns: 1, pid: 7, tid: 7, op: 'close', fd: 3, fd_kind: 'system', vm: null, vcpu: null, ret: 0 },
      { type: 'fd', ts_ns: 1, pid: 7, tid: 7, op: 'leak', fd: 4, fd_kind: 'vm', vm: 0, vcpu: null },
      { type: 'kvm_run', pid: 7, vcpu: 0, fd: 12, kernel_addr: '0xffff888000001000', user_addr: '0x7f0000000000', mmap_size: 12288 },
    ];
    for (const r of recs) s.write(r);
    const sum = s.build({ strategy: 'tracepoint', lost: 0, duration_s: 1.5, events: 200 });
    expect(sum).toMatchObject({
      type: 'summary',
      strategy: 'tracepoint',
      events: 200,
      lost: 0,
      unknown_ioctls: 1,
      duration_s: 1.5,
      exits: { '7/0': { IO: 90, HLT: 10 }, '7/1': { MMIO: 1 } },
      kvm_run: [recs.at(-1)],
      fds: { opened: 1, closed: 1, leaked: 1 },
    });
    expect(Object.keys(sum.ioctls)[0]).toBe('KVM_RUN');
    expect(sum.ioctls.KVM_RUN).toEqual({ count: 101, errors: 0, p50_ns: expect.any(Number), p99_ns: expect.any(Number), max_ns: 9000 });
    expect(Math.abs(sum.ioctls.KVM_RUN.p50_ns - 8050)).toBeLessThan(8050 * 0.02);
    expect(sum.ioctls['KVM_UNKNOWN_0x8091ae81']).toMatchObject({ count: 1, errors: 1, p50_ns: 900 });
    expect(sum.ioctls.KVM_GET_API_VERSION).toMatchObject({ count: 1, p50_ns: 0 });
  });
});

describe('live line formatter', () => {
  it.each([
    [ioctl({ args: { rax: 0, rip: 0x1000, rflags: 2, rsp: 0x8000 } }), '[8] KVM_SET_REGS(fd=12 vcpu=0, {rip=0x1000, rflags=2, rsp=0x8000}) = 0 <3.2µs>'],
    [
      ioctl({ name: 'KVM_RUN', latency_ns: 8100, exit: { reason: 'IO', code: 2, direction: 'out', size: 1, port: 0x3f8, count: 1, data_offset: 4096, data: 0x48 } }),
      '[8] KVM_RUN(fd=12 vcpu=0) = 0 IO out port=0x3f8 size=1 data=0x48 <8.1µs>',
    ],
    [
      ioctl({ name: 'KVM_RUN', latency_ns: 12_500, exit: { reason: 'MMIO', code: 6, phys_addr: '0xfee000b0', len: 4, is_write: false } }),
      '[8] KVM_RUN(fd=12 vcpu=0) = 0 MMIO read 0xfee000b0 len=4 <12.5µs>',
    ],
    [
      ioctl({ name: 'KVM_CHECK_EXTENSION', fd: 3, fd_kind: 'system', vm: null, vcpu: null, ret: 1, latency_ns: 900, args: { cap: 'KVM_CAP_USER_MEMORY', value: 3 } }),
      '[8] KVM_CHECK_EXTENSION(fd=3 kvm, {cap=KVM_CAP_USER_MEMORY, value=3}) = 1 <900ns>',
    ],
    [
      ioctl({ name: 'KVM_UNKNOWN_0x8091ae81', fd_kind: 'vm', vcpu: null, ret: -25, errno: 'ENOTTY', latency_ns: 1100 }),
      '[8] KVM_UNKNOWN_0x8091ae81(fd=12 vm=0) = -1 ENOTTY <1.1µs>',
    ],
    [
      ioctl({ name: 'KVM_SET_MSRS', ret: 2, args: { nmsrs: 2, entries: [{ index: 0x10, data: 5 }, { index: 0x11, data: 0 }] } }),
      '[8] KVM_SET_MSRS(fd=12 vcpu=0, {nmsrs=2, entries=[{…}, {…}]}) = 2 <3.2µs>',
    ],
    [ioctl({ name: 'KVM_GET_LAPIC', args: { regs: 'ab'.repeat(512), _truncated: true } }), '[8] KVM_GET_LAPIC(fd=12 vcpu=0, {regs=abababababababababab…, …truncated}) = 0 <3.2µs>'],
    [
      { type: 'kvm_run', pid: 7, vcpu: 0, fd: 12, kernel_addr: '0xffff888000001000', user_addr: '0x7f0000000000', mmap_size: 12288 },
      '[7] +++ kvm_run vcpu=0 fd=12: kernel 0xffff888000001000 user 0x7f0000000000 (12288 bytes mapped)',
    ],
    [{ type: 'fd', ts_ns: 1, pid: 7, tid: 7, op: 'open', fd: 3, fd_kind: 'system', vm: null, vcpu: null, ret: 3 }, '[7] +++ system fd=3 kvm opened'],
    [{ type: 'fd', ts_ns: 1, pid: 7, tid: 7, op: 'leak', fd: 6, fd_kind: 'vcpu', vm: 0, vcpu: 1 }, '[7] +++ vcpu fd=6 vcpu=1 still open at exit'],
    [{ type: 'lost', count: 3 }, '!!! 3 records lost'],
  ] as Array<[TraceRecord, string]>)('%#', (rec, line) => {
    expect(formatRecord(rec)).toBe(line);
  });

  it.each([
    [850, '850ns'],
    [3200, '3.2µs'],
    [12_500, '12.5µs'],
    [45_000, '45µs'],
    [999_999, '1ms'],
    [1_250_000, '1.25ms'],
    [2_010_000_000, '2.01s'],
  ])('duration %d → %s', (ns, s) => {
    expect(formatDuration(ns)).toBe(s);
  });
});

describe('JsonlSink', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kt-jsonl-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes one JSON object per line and flushes everything on close', async () => {
    const path = join(dir, 'a.jsonl');
    const sink = await JsonlSink.open(path, { chunkBytes: 1000 });
    const recs = Array.from({ length: 5000 }, (_, i) => ioctl({ ts_ns: i, args: { i } }));
    for (const r of recs) sink.write(r);
    await sink.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines.length).toBe(5000);
    expect(lines.map((l) => JSON.parse(l))).toEqual(recs);
    expect(sink.stats).toMatchObject({ records: 5000, dropped: 0 });
    sink.write(recs[0]); // after close: counted, not thrown
    expect(sink.stats.dropped).toBe(1);
  });

  it('a bad path fails at open with the system reason', async () => {
    await expect(JsonlSink.open(join(dir, 'missing', 'x.jsonl'))).rejects.toThrow(/ENOENT/);
  });

  /** A Writable that takes `delayMs` per chunk: pushes back with a small highWaterMark. */
  const slow = (delayMs: number, got: string[]): Writable =>
    new Writable({
      highWaterMark: 1024,
      write(chunk, _enc, cb) {
        got.push(String(chunk));
        setTimeout(cb, delayMs);
      },
    });

  it('honours backpressure: nothing lost while the stream is slow', async () => {
    const got: string[] = [];
    const sink = new JsonlSink(slow(2, got), { chunkBytes: 512 });
    for (let i = 0; i < 2000; i++) sink.write({ type: 'lost', count: i });
    await sink.close();
    const lines = got.join('').trimEnd().split('\n');
    expect(lines.length).toBe(2000);
    expect(JSON.parse(lines[1999])).toEqual({ type: 'lost', count: 1999 });
    expect(sink.stats.dropped).toBe(0);
  });

  it('drops and counts past maxBufferedBytes instead of growing without bound', async () => {
    const got: string[] = [];
    const sink = new JsonlSink(slow(1, got), { chunkBytes: 256, maxBufferedBytes: 4096 });
    for (let i = 0; i < 5000; i++) sink.write({ type: 'lost', count: i });
    await sink.close();
    const delivered = got.join('').trimEnd().split('\n').length;
    expect(sink.stats.dropped).toBeGreaterThan(0);
    expect(delivered + sink.stats.dropped).toBe(5000);
  });

  it('a stream error is kept and the undelivered records are counted', async () => {
    const failing = new Writable({
      write(_chunk, _enc, cb) {
        cb(new Error('disk full'));
      },
    });
    const sink = new JsonlSink(failing, { chunkBytes: 64 });
    for (let i = 0; i < 100; i++) sink.write({ type: 'lost', count: i });
    await new Promise((r) => setTimeout(r, 10));
    for (let i = 0; i < 10; i++) sink.write({ type: 'lost', count: i });
    await sink.close();
    expect(sink.error?.message).toBe('disk full');
    expect(sink.stats.dropped).toBeGreaterThanOrEqual(10);
  });
});

describe('recordJson (the sink\'s fast path)', () => {
  it('gives exactly JSON.stringify\'s text for decoder-built records', () => {
    const snap = new Uint8Array(KT_RUN_SNAP);
    const dv = new DataView(snap.buffer);
    const recs: Uint8Array[] = [];
    // exit_reason sits at kvm_run offset 8 and io at 32 in every kernel; here only their values matter
    for (const [code, dir] of [[2, 1], [2, 0], [5, 0], [6, 1], [17, 0], [99, 0]]) {
      snap.fill(0);
      dv.setUint8(32, dir);
      dv.setUint8(33, 1);
      dv.setUint16(34, 0x3f8, true);
      dv.setUint32(36, 1, true);
      recs.push(encodeIoctl({ ts_ns: 5, enter_ns: 1, pid: 3, fd: 6, cmd: 0xae80, flags: KT_F_RUN, vcpu_id: 0, exit_reason: code, fd_kind: KT_FD_VCPU, comm: 'we"ird\\', pio_data: new Uint8Array([0x41]), out: snap }));
    }
    recs.push(encodeIoctl({ ts_ns: 5, pid: 3, fd: 6, cmd: 0x8090ae81, fd_kind: KT_FD_VCPU, ret: -14, out: new Uint8Array(144) }));
    recs.push(encodeIoctl({ ts_ns: 5, pid: 3, fd: 6, cmd: 0xae03, arg: 3, ret: 1 }));
    const out: TraceRecord[] = [];
    decodeStream(frameRecords(recs), new Decoder({ emit: (r) => out.push(r) }));
    expect(out.length).toBe(recs.length);
    for (const r of out) expect(recordJson(r)).toBe(JSON.stringify(r));
  });
});
