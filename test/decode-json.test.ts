/**
 * The JSONL encoder (src/decode/json.ts) against JSON.stringify: for every record shape the decoder and the
 * capture build — and for hand-made values at every edge its fast path must refuse — the bytes written are
 * exactly JSON.stringify's text, one record per line, whatever the per-thread caches held before; chunks
 * hold whole lines only.
 */
import { describe, expect, it } from 'vitest';
import { JsonlEncoder, recordJson } from '../src/decode/json.js';
import { Decoder } from '../src/decode/decoder.js';
import { decodeStream } from '../src/decode/stream.js';
import { frameRecords } from '../src/ringbuf/stream.js';
import {
  KT_FD_OPEN, KT_FD_CLOSE, KT_FD_SYSTEM, KT_FD_VCPU, KT_FD_VM, KT_F_NO_ENTER, KT_F_RUN, KT_RUN_SNAP, KT_COPY_FROM_USER,
} from '../src/bpf/event-layout.js';
import { encodeCopy, encodeExit, encodeFd, encodeIoctl, encodeMmap } from './helpers/kt-records.js';
import { sampleTrace } from './report-fixtures.js';
import { cmdOf } from './decode-helpers.js';
import type { ExitInfo, IoctlRecord, TraceRecord } from '../src/decode/records.js';

/** Everything `records` encodes to, through one encoder (caches warm across records), and the chunks. */
function encodeAll(records: TraceRecord[], chunkBytes = 1 << 16): { text: string; chunks: Array<{ text: string; records: number }> } {
  const chunks: Array<{ text: string; records: number }> = [];
  const enc = new JsonlEncoder((b, records) => chunks.push({ text: b.toString('utf8'), records }), chunkBytes);
  for (const r of records) enc.write(r);
  enc.flush();
  return { text: chunks.map((c) => c.text).join(''), chunks };
}

const expected = (records: TraceRecord[]): string => records.map((r) => `${JSON.stringify(r)}\n`).join('');

/** A kvm_run snapshot with an io exit (direction, size, port, count) or an mmio one. */
function snap(opts: { dir?: number; size?: number; port?: number; count?: number; mmio?: { addr: bigint; len: number; write: number; data: number } }): Uint8Array {
  const s = new Uint8Array(KT_RUN_SNAP);
  const dv = new DataView(s.buffer);
  // exit union at 32 in every kernel: io {direction u8, size u8, port u16, count u32, data_offset u64}, mmio {phys_addr, data[8], len, is_write}
  if (opts.mmio) {
    dv.setBigUint64(32, opts.mmio.addr, true);
    dv.setUint32(40, opts.mmio.data, true);
    dv.setUint32(48, opts.mmio.len, true);
    dv.setUint8(52, opts.mmio.write);
  } else {
    dv.setUint8(32, opts.dir ?? 1);
    dv.setUint8(33, opts.size ?? 1);
    dv.setUint16(34, opts.port ?? 0x3f8, true);
    dv.setUint32(36, opts.count ?? 1, true);
    dv.setBigUint64(40, 4096n, true);
  }
  return s;
}

/** A decoded capture of two processes with every record type and exit shape the decoder makes. */
function decoderRecords(lean: boolean): TraceRecord[] {
  const raw: Uint8Array[] = [];
  let t = 1_000_000;
  const tick = (): number => (t += 1000);
  for (const pid of [300, 301 + 64 /* same cache slot as 301 - 64 … tids collide on purpose */, 301]) {
    const tid = pid + 1;
    raw.push(encodeFd({ ts_ns: tick(), pid, fd: 3, op: KT_FD_OPEN, kind: KT_FD_SYSTEM, comm: 'vmm' }));
    raw.push(encodeIoctl({ ts_ns: tick(), enter_ns: t - 500, pid, fd: 3, cmd: cmdOf('KVM_CREATE_VM'), ret: 4, fd_kind: KT_FD_SYSTEM, comm: 'vmm' }));
    raw.push(encodeIoctl({ ts_ns: tick(), enter_ns: t - 500, pid, fd: 4, cmd: cmdOf('KVM_CREATE_VCPU'), arg: 0, ret: 5, fd_kind: KT_FD_VM, comm: 'vmm' }));
    raw.push(encodeMmap({ ts_ns: tick(), pid, addr: 0x7f0000001000n, len: 12288, fd: 5, kind: KT_FD_VCPU }));
    raw.push(encodeIoctl({ ts_ns: tick(), pid, fd: 3, cmd: cmdOf('KVM_CHECK_EXTENSION'), arg: 7, ret: 1, fd_kind: KT_FD_SYSTEM, comm: 'vmm' }));
    raw.push(encodeIoctl({ ts_ns: tick(), pid, fd: 3, cmd: 0xaeff, ret: -25, fd_kind: KT_FD_SYSTEM, comm: 'vmm' }));
    raw.push(encodeIoctl({ ts_ns: tick(), pid, tid, fd: 5, cmd: cmdOf('KVM_GET_REGS'), arg: 0x7ffd1000, ret: -14, fd_kind: KT_FD_VCPU, comm: 'w"eird\\' }));
    raw.push(encodeCopy({ ts_ns: tick(), pid, tid, uaddr: 0x7ffd2000n, len: 144, dir: KT_COPY_FROM_USER, cmd: cmdOf('KVM_SET_REGS'), fd: 5 }));
    raw.push(encodeIoctl({ ts_ns: tick(), enter_ns: t - 900, pid, tid, fd: 5, cmd: cmdOf('KVM_SET_REGS'), arg: 0x7ffd2000, fd_kind: KT_FD_VCPU, comm: 'vcpu0', in: new Uint8Array(144) }));
    const run = (out: Uint8Array, code: number, extra: { ret?: number; flags?: number; comm?: string; pio?: number[] } = {}): void => {
      raw.push(encodeIoctl({
        ts_ns: tick(), enter_ns: t - 8000, pid, tid, fd: 5, cmd: cmdOf('KVM_RUN'), flags: KT_F_RUN | (extra.flags ?? 0), vcpu_id: 0,
        exit_reason: code, fd_kind: KT_FD_VCPU, comm: extra.comm ?? 'vcpu0', ret: extra.ret ?? 0, run_kaddr: 0xffff888012345000n,
        pio_data: new Uint8Array(extra.pio ?? [0x41, 0x42, 0x43, 0x44, 0, 0, 0, 0]), out,
      }));
    };
    for (let i = 0; i < 3; i++) run(snap({}), 2); // the hot path, repeated: cached segments
    run(snap({ port: 0x80 }), 2); // a new port: the exit segment changes
    run(snap({ dir: 0 }), 2); // IO in: no data
    run(snap({ size: 2, count: 3 }), 2); // string data (bytes as hex)
    run(snap({ size: 4, count: 2 }), 2, { pio: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] }); // 8 bytes of data
    run(snap({ mmio: { addr: 0xfee00000n, len: 4, write: 1, data: 0xdeadbeef } }), 6);
    run(snap({ mmio: { addr: 0xfee00000n, len: 8, write: 1, data: 0xdeadbeef } }), 6); // 8 bytes: "0x…" data
    run(snap({ mmio: { addr: 0xfee00000n, len: 4, write: 0, data: 0 } }), 6); // read: no data
    run(snap({}), 5); // HLT
    run(snap({}), 8); // SHUTDOWN
    run(snap({}), 17); // INTERNAL_ERROR: union member fields
    run(snap({}), 24); // SYSTEM_EVENT
    run(snap({}), 250); // unknown reason
    run(snap({}), 10, { ret: -4 }); // INTR after -EINTR
    run(snap({}), 2, { ret: -4 }); // failed: no exit
    run(snap({}), 2, { flags: KT_F_NO_ENTER }); // attached mid-call
    run(snap({}), 2, { comm: 'vcpü' }); // a comm outside ASCII (Latin-1 bytes)
    run(snap({}), 2, { comm: 'vcpu0' });
    raw.push(encodeFd({ ts_ns: tick(), pid, fd: 5, op: KT_FD_CLOSE, kind: KT_FD_VCPU }));
    raw.push(encodeExit({ ts_ns: tick(), pid }));
  }
  const out: TraceRecord[] = [];
  const d = new Decoder({ emit: (r) => out.push(r), lean });
  decodeStream(frameRecords(raw), d);
  d.finish();
  out.push({ type: 'lost', count: 2 });
  return out;
}

describe('JsonlEncoder: the same text as JSON.stringify', () => {
  it.each([false, true])('every record shape the decoder builds (lean %s)', (lean) => {
    const recs = decoderRecords(lean);
    expect(recs.filter((r) => r.type === 'ioctl' && r.exit).length).toBeGreaterThan(30);
    expect(new Set(recs.map((r) => r.type))).toEqual(new Set(['fd', 'ioctl', 'copy', 'kvm_run', 'lost']));
    expect(encodeAll(recs).text).toBe(expected(recs));
  });

  it('the report fixtures (args, flags, explain, summary, exits built by hand)', () => {
    const recs = sampleTrace({ runs: 50 });
    (recs[5] as IoctlRecord).flags = [{ what: 'arg', dir: 'from_user', addr: '0x10', len: 8, align: 8, misaligned: false, cacheline_cross: false, lines: 1, min_lines: 1, source: 'derived' }];
    (recs[6] as IoctlRecord).explain = 'a "quoted" reason\n';
    expect(encodeAll(recs).text).toBe(expected(recs));
  });

  const run = (over: Partial<IoctlRecord> = {}, exit: ExitInfo | undefined = { reason: 'IO', code: 2, direction: 'out', size: 1, port: 16, count: 1, data_offset: 4096, data: 65 }): IoctlRecord => {
    const r: IoctlRecord = {
      type: 'ioctl', ts_ns: 1797866857705, enter_ns: 1797866848438, pid: 10, tid: 11, comm: 'vcpu0', fd: 5, fd_kind: 'vcpu', vm: 0,
      vcpu: 0, cmd: '0x0000ae80', name: 'KVM_RUN', size: 0, dir: 'none', arg: '0x0', ret: 0, errno: null, latency_ns: 9267, ...over,
    };
    if (exit) r.exit = exit;
    return r;
  };
  const io = (over: Partial<ExitInfo>): ExitInfo => ({ reason: 'IO', code: 2, direction: 'out', size: 1, port: 16, count: 1, data_offset: 4096, data: 65, ...over });

  const edges: Array<[string, () => IoctlRecord]> = [
    ['the hot record', () => run()],
    ['ts at 2^53 - 1', () => run({ ts_ns: 2 ** 53 - 1, latency_ns: 0 })],
    ['ts past 2^53 (not a safe integer)', () => run({ ts_ns: 2 ** 53 + 2 })],
    ['1e21 (exponent form)', () => run({ ts_ns: 1e21 })],
    ['a fraction', () => run({ latency_ns: 1.5 })],
    ['NaN and Infinity (null)', () => run({ latency_ns: NaN, enter_ns: Infinity })],
    ['negative ret and errno', () => run({ ret: -4, errno: 'EINTR' })],
    ['-0', () => run({ ret: -0 })],
    ['digits at every length', () => run({ ts_ns: 100000000, enter_ns: 99999999, latency_ns: 10 })],
    ['comm with quote and backslash', () => run({ comm: 'a"b\\c' })],
    ['comm outside ASCII', () => run({ comm: 'vcpü' })],
    ['comm with a control character', () => run({ comm: 'a\nb\u0001' })],
    ['a lone surrogate', () => run({ comm: 'x\ud800' })],
    ['U+2028', () => run({ name: 'KVM_RUN\u2028' })],
    ['vm and vcpu null', () => run({ vm: null, vcpu: null })],
    ['an errno that needs escaping', () => run({ ret: -1, errno: 'E"X' })],
    ['no exit', () => run({}, undefined)],
    ['exit IO without data', () => run({}, io({ data: undefined }))],
    ['exit IO, data a hex string', () => run({}, io({ data: '0x1122334455667788' }))],
    ['exit IO, data bytes', () => run({}, io({ data: '414243' }))],
    ['exit IO, data an array', () => run({}, io({ data: [1, 2] }))],
    ['exit IO, data an odd string', () => run({}, io({ data: 'a"\u00e9' }))],
    ['exit IO, direction a number', () => run({}, io({ direction: 1 }))],
    ['exit IO with an extra member', () => run({}, io({ extra: true }))],
    ['exit IO missing a member', () => { const e = io({}); delete e.port; return run({}, e); }],
    ['exit MMIO', () => run({}, { reason: 'MMIO', code: 6, phys_addr: '0xfee00000', len: 4, is_write: true, data: 7 })],
    ['exit MMIO read', () => run({}, { reason: 'MMIO', code: 6, phys_addr: '0xfee00000', len: 4, is_write: false })],
    ['exit HLT', () => run({}, { reason: 'HLT', code: 5 })],
    ['exit HLT with data', () => run({}, { reason: 'HLT', code: 5, data: 1 })],
    ['exit with union fields', () => run({}, { reason: 'SYSTEM_EVENT', code: 24, type: 1, type_name: 'SHUTDOWN', ndata: 0, data: [] })],
    ['exit code not an integer', () => run({}, { reason: 'HLT', code: 5.5 })],
    ['no_enter', () => run({ no_enter: true, enter_ns: 0, latency_ns: 0 })],
    ['args', () => run({ args: { a: 1, b: '0x2', c: [1, { d: null }] } })],
    ['a member set to undefined (omitted)', () => run({ explain: undefined })],
    ['an extra member', () => Object.assign(run(), { extra: 1 })],
    ['a fixed member missing', () => { const r = run(); delete (r as Partial<IoctlRecord>).comm; return r; }],
    ['a fixed member of the wrong type', () => run({ pid: '10' as unknown as number })],
    ['a fixed member undefined', () => run({ fd_kind: undefined })],
  ];

  it.each(edges)('%s', (_name, make) => {
    const r = make();
    expect(recordJson(r)).toBe(JSON.stringify(r));
  });

  it('integers of every digit count, both signs, as JSON writes them', () => {
    const ints: number[] = [0];
    for (let k = 1; k <= 16; k++) ints.push(10 ** k - 1, 10 ** k, 10 ** k + 1, Math.floor(10 ** k / 3));
    ints.push(Number.MAX_SAFE_INTEGER, 123456789012345);
    for (const n of ints) {
      const r = run({ ts_ns: n, enter_ns: Math.floor(n / 7), ret: -Math.min(n, 2 ** 31), latency_ns: n % 100003 });
      expect(recordJson(r), String(n)).toBe(JSON.stringify(r));
    }
  });

  it('all edges in one stream, twice, through the per-thread caches (tids colliding in one slot)', () => {
    const recs: TraceRecord[] = [];
    for (let pass = 0; pass < 2; pass++) {
      for (const [, make] of edges) {
        for (const tid of [11, 11 + 64, 11]) recs.push(Object.assign(make(), { tid }), run({ tid }));
      }
    }
    expect(encodeAll(recs).text).toBe(expected(recs));
  });

  it('takes the fast path for the hot shapes, lean ones included (JSON.stringify is not called)', () => {
    const recs = [
      run(),
      run({}, { reason: 'IO', code: 2 }), // --lean: every exit is {reason, code}
      run({}, { reason: 'MMIO', code: 6 }),
      run({}, { reason: 'MMIO', code: 6, phys_addr: '0xfee00000', len: 4, is_write: true, data: 7 }),
      run({}, { reason: 'HLT', code: 5 }),
      run({}, undefined),
    ];
    const enc = new JsonlEncoder(() => {});
    for (const r of recs) enc.write(r);
    expect(enc.slow).toBe(0);
    enc.write(run({ args: { a: 1 } }));
    expect(enc.slow).toBe(1);
  });

  it('chunks hold whole lines and count them', () => {
    const recs = decoderRecords(false);
    for (const size of [64, 300, 1000, 5000]) {
      const { text, chunks } = encodeAll(recs, size);
      expect(text).toBe(expected(recs));
      expect(chunks.reduce((n, c) => n + c.records, 0)).toBe(recs.length);
      for (const c of chunks) {
        expect(c.text.endsWith('\n')).toBe(true);
        expect(c.text.split('\n').length - 1).toBe(c.records);
      }
    }
  });

  it('a record JSON.stringify refuses writes nothing and throws; the next record is whole', () => {
    const chunks: string[] = [];
    const enc = new JsonlEncoder((b) => chunks.push(b.toString('utf8')));
    enc.write(run());
    expect(() => enc.write(run({ args: { big: 1n } }))).toThrow(/BigInt/);
    enc.write(run({ ts_ns: 5 }));
    enc.flush();
    expect(chunks.join('')).toBe(`${JSON.stringify(run())}\n${JSON.stringify(run({ ts_ns: 5 }))}\n`);
  });

  it('members in another insertion order: the same JSON value (the fast path writes the contract order)', () => {
    const r = run();
    const reordered = Object.fromEntries(Object.entries(r).reverse()) as unknown as IoctlRecord;
    expect(JSON.parse(recordJson(reordered))).toEqual(r);
  });
});
