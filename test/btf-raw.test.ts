/**
 * The raw BTF decoder on hand-assembled BTF: the encodings a real kernel or compiler here may not emit
 * (ENUM64 with signed values, a header longer than 24 bytes, big-endian BTF, split BTF, old-style int
 * bitfields, a kind newer than this reader) built byte by byte after Documentation/bpf/btf.rst.
 */
import { describe, expect, it } from 'vitest';
import { Btf, BtfError } from '../src/btf/index.js';

const KIND = { int: 1, ptr: 2, array: 3, struct: 4, union: 5, enum: 6, fwd: 7, typedef: 8, func_proto: 13, float: 16, enum64: 19 } as const;

/** A tiny BTF writer: type records as 32-bit words, a deduplicated string table. */
class BtfWriter {
  private readonly words: number[] = [];
  private readonly strings = new Map<string, number>();
  private strBytes: number[] = [];
  private nextId: number;

  constructor(opts: { firstId?: number; strBase?: number } = {}) {
    this.nextId = opts.firstId ?? 1;
    this.strBase = opts.strBase ?? 0;
    if (this.strBase === 0) this.str(''); // offset 0 is the empty string in a base BTF
  }
  private readonly strBase: number;

  str(s: string): number {
    if (s === '' && this.strBase > 0) return 0;
    const have = this.strings.get(s);
    if (have !== undefined) return have;
    const off = this.strBase + this.strBytes.length;
    this.strBytes.push(...Buffer.from(s, 'utf8'), 0);
    this.strings.set(s, off);
    return off;
  }

  add(name: string | number, kind: number, vlen: number, kflag: boolean, sizeOrType: number, extra: number[] = []): number {
    const nameOff = typeof name === 'number' ? name : this.str(name);
    this.words.push(nameOff, ((kflag ? 1 : 0) << 31) | (kind << 24) | vlen, sizeOrType, ...extra);
    return this.nextId++;
  }

  int(name: string, size: number, bits = size * 8, signed = false, bitOffset = 0): number {
    return this.add(name, KIND.int, 0, false, size, [((signed ? 1 : 0) << 24) | (bitOffset << 16) | bits]);
  }

  record(kind: 'struct' | 'union', name: string, size: number, members: Array<[string, number, number, number?]>, kflag = false): number {
    const extra = members.flatMap(([n, type, bitOff, bitSize]) => [this.str(n), type, kflag ? ((bitSize ?? 0) << 24) | bitOff : bitOff]);
    return this.add(name, KIND[kind], members.length, kflag, size, extra);
  }

  bytes(opts: { hdrLen?: number; bigEndian?: boolean } = {}): Uint8Array {
    const hdrLen = opts.hdrLen ?? 24;
    const le = !opts.bigEndian;
    const typeLen = this.words.length * 4;
    const strLen = this.strBytes.length;
    const buf = new Uint8Array(hdrLen + typeLen + strLen);
    const dv = new DataView(buf.buffer);
    dv.setUint16(0, 0xeb9f, le);
    dv.setUint8(2, 1);
    dv.setUint8(3, 0);
    dv.setUint32(4, hdrLen, le);
    dv.setUint32(8, 0, le);
    dv.setUint32(12, typeLen, le);
    dv.setUint32(16, typeLen, le);
    dv.setUint32(20, strLen, le);
    this.words.forEach((w, i) => dv.setUint32(hdrLen + i * 4, w >>> 0, le));
    buf.set(this.strBytes, hdrLen + typeLen);
    return buf;
  }
}

/** One BTF with a bit of everything: ids 1..8. */
function sample(): BtfWriter {
  const w = new BtfWriter();
  const u32 = w.int('unsigned int', 4); // 1
  const u8 = w.int('unsigned char', 1); // 2
  w.record('struct', 'pair', 8, [['a', u32, 0], ['b', u8, 32]]); // 3: size 8, align 4
  w.add('e64', KIND.enum64, 2, true, 8, [w.str('NEG'), (-5 >>> 0), 0xffffffff, w.str('BIG'), 1, 0x80000000]); // 4 (signed)
  w.add('u64e', KIND.enum64, 1, false, 8, [w.str('TOP'), 1, 0x80000000]); // 5 (unsigned)
  w.record('struct', 'packed', 5, [['c', u8, 0], ['i', u32, 8]]); // 6: int at byte 1 → packed
  w.int('three_bits', 4, 3, false, 0); // 7: old-style bitfield int
  w.record('struct', 'oldbits', 4, [['x', 7, 0], ['y', 7, 3]]); // 8: kind_flag 0 bitfields
  w.add('double', KIND.float, 0, false, 8); // 9
  w.add('fn_t', KIND.func_proto, 2, false, u32, [0, u32, 0, 0]); // 10: unsigned int (unsigned int, ...)
  w.add('', KIND.ptr, 0, false, 10); // 11: pointer to it
  w.add('pair', KIND.fwd, 0, false, 0); // 12: a forward declaration sharing the name
  w.record('struct', 'kf', 4, [['lo', u32, 0, 4], ['hi', u32, 4, 12]], true); // 13: kind_flag bitfields
  return w;
}

describe('raw BTF decoding', () => {
  it.each([
    ['little-endian, 24-byte header', { hdrLen: 24 }],
    ['a header longer than 24 bytes (newer kernels add fields)', { hdrLen: 32 }],
    ['big-endian', { bigEndian: true }],
  ])('reads %s', (_what, opts) => {
    const btf = Btf.fromRaw(sample().bytes(opts));
    expect(btf.count).toBe(14);
    expect(btf.struct('pair')).toMatchObject({ size: 8, align: 4, members: [{ name: 'a', offset: 0 }, { name: 'b', offset: 4 }] });
    expect(btf.typeName(11)).toBe('unsigned int (*)(unsigned int, ...)');
  });

  it('decodes ENUM64 values as bigint, signed when kind_flag is set', () => {
    const btf = Btf.fromRaw(sample().bytes());
    expect(btf.type(4)).toMatchObject({ kind: 'enum64', signed: true, values: [{ name: 'NEG', value: -5n }, { name: 'BIG', value: -(2n ** 63n) + 1n }] });
    expect(btf.type(5)).toMatchObject({ kind: 'enum64', signed: false, values: [{ name: 'TOP', value: 2n ** 63n + 1n }] });
    expect([btf.sizeOf(4), btf.alignOf(4), btf.typeName(4)]).toEqual([8, 8, 'enum e64']);
  });

  it.each([
    ['kind_flag bitfields', 'kf', [['lo', 0, 4], ['hi', 4, 12]]],
    ['old-style bitfields carried by the int type', 'oldbits', [['x', 0, 3], ['y', 3, 3]]],
  ])('decodes %s', (_what, name, want) => {
    const l = Btf.fromRaw(sample().bytes()).struct(name)!;
    expect(l.members.map((m) => [m.name, m.bitOffset, m.bitSize])).toEqual(want);
  });

  it('treats a member at an offset its alignment forbids as packed (align 1)', () => {
    const btf = Btf.fromRaw(sample().bytes());
    expect(btf.struct('packed')!.align).toBe(1);
    expect(btf.alignOf(3)).toBe(4);
  });

  it('prefers a complete definition over a forward declaration of the same name', () => {
    const btf = Btf.fromRaw(sample().bytes());
    expect(btf.findAllByName('pair')).toEqual([3, 12]);
    expect(btf.findByName('pair')?.kind).toBe('struct');
    expect(btf.findByName('pair', 'fwd')?.id).toBe(12);
    expect(() => btf.sizeOf(12)).toThrow(/fwd\) has no size/);
  });

  it('reads FLOAT', () => {
    const btf = Btf.fromRaw(sample().bytes());
    expect(btf.type(9)).toEqual({ id: 9, kind: 'float', name: 'double', size: 8 });
    expect([btf.sizeOf(9), btf.alignOf(9)]).toEqual([8, 8]);
  });

  it('reads split BTF whose ids and strings continue a base', () => {
    const baseW = new BtfWriter();
    baseW.int('int', 4, 32, true);
    const base = Btf.fromRaw(baseW.bytes());
    const baseBytes = baseW.bytes();
    const strLen = new DataView(baseBytes.buffer).getUint32(20, true);
    const split = new BtfWriter({ firstId: 2, strBase: strLen });
    // A member named with a base string ("int") and one with the split's own string.
    split.add('mod_s', KIND.struct, 2, false, 8, [baseW.str('int'), 1, 0, split.str('own'), 1, 32]);
    const btf = Btf.fromRaw(split.bytes(), base);
    expect(btf.count).toBe(3);
    const l = btf.struct('mod_s')!;
    expect(l.members.map((m) => [m.name, m.offset, m.typeName])).toEqual([['int', 0, 'int'], ['own', 4, 'int']]);
    expect(btf.findByName('int')?.id).toBe(1);
    // A split type named with a base string is found by that name, in id order after the base's.
    const split2 = new BtfWriter({ firstId: 2, strBase: strLen });
    split2.add(baseW.str('int'), KIND.typedef, 0, false, 1);
    split2.add('own', KIND.typedef, 0, false, 1);
    const btf2 = Btf.fromRaw(split2.bytes(), base);
    expect(btf2.findAllByName('int')).toEqual([1, 2]);
    expect(btf2.findAllByName('own')).toEqual([3]);
    expect(btf2.findAllByName('in')).toEqual([]);
  });

  it('finds names through its hash index exactly as a scan of every type does', () => {
    const w = sample();
    // Names sharing prefixes, non-ASCII, and many of them (hash chains longer than one).
    for (let i = 0; i < 3000; i++) w.add(`n${i % 700}`, KIND.typedef, 0, false, 1);
    w.add('pàir', KIND.typedef, 0, false, 1);
    const btf = Btf.fromRaw(w.bytes());
    const names = new Set<string>(['', 'pair', 'pàir', 'pai', 'pairs', 'n1', 'n69', 'n699', 'n700', 'absent']);
    for (const name of names) {
      const scan: number[] = [];
      for (let id = 1; id < btf.count; id++) if ((btf.type(id) as { name?: string }).name === name || (name === '' && !(btf.type(id) as { name?: string }).name)) scan.push(id);
      expect(btf.findAllByName(name), name).toEqual(scan);
    }
  });

  it.each([
    ['bad magic', (b: Uint8Array) => { b[0] = 0; }, /not BTF: magic/],
    ['a section past the end', (b: Uint8Array) => { new DataView(b.buffer).setUint32(20, 1 << 20, true); }, /run past the end/],
    ['an unknown kind (20)', (b: Uint8Array) => { new DataView(b.buffer).setUint32(24 + 4, 20 << 24, true); }, /unknown BTF kind 20 at type id 1/],
    ['a truncated record', (b: Uint8Array) => { new DataView(b.buffer).setUint32(12, 14, true); }, /truncated BTF type record|runs past the type section/],
  ])('rejects %s with one clear error', (_what, corrupt, msg) => {
    const bytes = sample().bytes();
    corrupt(bytes);
    expect(() => Btf.fromRaw(bytes)).toThrow(msg);
    expect(() => Btf.fromRaw(bytes)).toThrow(BtfError);
  });

  it('refuses ids that do not exist', () => {
    const btf = Btf.fromRaw(sample().bytes());
    expect(() => btf.type(14)).toThrow(/BTF type id 14 does not exist/);
    expect(btf.type(0).kind).toBe('void');
  });
});
