// The pure ring-buffer layer on a plain buffer: a data area "mapped twice" is simulated by writing every
// byte at both i and i + size, which is exactly what the kernel's double mapping guarantees.
import { describe, expect, it } from 'vitest';
import { RINGBUF_BUSY_BIT, RINGBUF_DISCARD_BIT, RingCursor, recordStride } from '../src/ringbuf/records.js';
import { FrameWriter, forEachRecord, frameRecords } from '../src/ringbuf/stream.js';
import { StallGuard } from '../src/ringbuf/stall-guard.js';

const SIZE = 256;

class FakeRing {
  /** `double`: the data area mapped twice, as the kernel offers it; else once, as the reader maps it. */
  constructor(private readonly double = true) {}
  readonly data = new ArrayBuffer(this.double ? 2 * SIZE : SIZE);
  readonly bytes = new Uint8Array(this.data);
  readonly consumer = new BigUint64Array(1);
  readonly producer = new BigUint64Array(1);
  prod = 0;

  cursor(): RingCursor {
    return new RingCursor(this.data, 0, SIZE, { consumer: this.consumer, producer: this.producer });
  }

  private put(pos: number, byte: number): void {
    const i = pos & (SIZE - 1);
    this.bytes[i] = byte;
    if (this.double) this.bytes[i + SIZE] = byte;
  }

  private putU32(pos: number, v: number): void {
    for (let k = 0; k < 4; k++) this.put(pos + k, (v >>> (8 * k)) & 0xff);
  }

  /** Write a record of `len` bytes (each byte = fill) with header bits; publish the producer position. */
  write(len: number, fill: number, bits = 0): number {
    const at = this.prod;
    this.putU32(at, (len | bits) >>> 0);
    this.putU32(at + 4, 0);
    for (let k = 0; k < len; k++) this.put(at + 8 + k, fill);
    this.prod += recordStride(len);
    this.producer[0] = BigInt(this.prod);
    return at;
  }

  /** Clear the BUSY bit of the record at `at` (the producer committing it). */
  commit(at: number, len: number, bits = 0): void {
    this.putU32(at, (len | bits) >>> 0);
  }
}

function collect(c: RingCursor, max?: number): Array<{ len: number; fill: number; off: number }> {
  const out: Array<{ len: number; fill: number; off: number }> = [];
  c.drain((view, off, len) => {
    // every byte of the record must carry the fill: proves the record is contiguous in the view
    const fill = len > 0 ? view.getUint8(off) : -1;
    for (let k = 0; k < len; k++) expect(view.getUint8(off + k)).toBe(fill);
    out.push({ len, fill, off });
  }, max);
  return out;
}

describe('recordStride', () => {
  it.each([
    [0, 8],
    [1, 16],
    [7, 16],
    [8, 16],
    [9, 24],
    [100, 112],
    [(5 | RINGBUF_DISCARD_BIT) >>> 0, 16],
    [(5 | RINGBUF_BUSY_BIT) >>> 0, 16],
  ])('len %d → %d bytes', (len, stride) => {
    expect(recordStride(len)).toBe(stride);
  });
});

describe('RingCursor', () => {
  it.each([
    { name: 'one record', lens: [4], want: [4] },
    { name: 'unaligned lengths keep 8-byte alignment', lens: [1, 3, 5, 7, 9, 13, 17], want: [1, 3, 5, 7, 9, 13, 17] },
    { name: 'empty record', lens: [0, 8], want: [0, 8] },
  ])('$name', ({ lens, want }) => {
    const r = new FakeRing();
    lens.forEach((len, i) => r.write(len, i + 1));
    const c = r.cursor();
    const got = collect(c);
    expect(got.map((g) => g.len)).toEqual(want);
    expect(got.map((g) => g.fill)).toEqual(lens.map((len, i) => (len > 0 ? i + 1 : -1)));
    for (const g of got) expect((g.off - 8) % 8).toBe(0);
    expect(c.cons).toBe(r.prod);
  });

  it.each([
    { name: 'busy first record stops everything', records: [[10, 'busy'], [10, '']], want: [] as number[], cons: 0 },
    { name: 'busy in the middle stops there', records: [[10, ''], [12, 'busy'], [14, '']], want: [10], cons: 24 },
    { name: 'discarded record skipped', records: [[10, ''], [12, 'discard'], [14, '']], want: [10, 14], cons: 24 + 24 + 24 },
    { name: 'only discarded', records: [[3, 'discard']], want: [], cons: 16 },
  ])('$name', ({ records, want, cons }) => {
    const r = new FakeRing();
    records.forEach(([len, kind], i) => {
      const bits = kind === 'busy' ? RINGBUF_BUSY_BIT : kind === 'discard' ? RINGBUF_DISCARD_BIT : 0;
      r.write(len as number, i + 1, bits);
    });
    const c = r.cursor();
    const step = c.drain(() => {});
    expect(step.busy).toBe(records.some(([, k]) => k === 'busy'));
    const c2 = r.cursor();
    expect(collect(c2).map((g) => g.len)).toEqual(want);
    expect(c2.cons).toBe(cons);
  });

  it('resumes at a busy record once the producer commits it', () => {
    const r = new FakeRing();
    r.write(10, 1);
    const at = r.write(20, 2, RINGBUF_BUSY_BIT);
    const c = r.cursor();
    expect(collect(c).map((g) => g.fill)).toEqual([1]);
    r.commit(at, 20);
    expect(collect(c).map((g) => g.fill)).toEqual([2]);
    expect(c.cons).toBe(r.prod);
  });

  it.each([
    ['double-mapped: read in place', true],
    ['mapped once: joined in a scratch buffer', false],
  ])('wraps around: a record crossing the end is contiguous (%s)', (_how, double) => {
    const r = new FakeRing(double);
    const c = r.cursor();
    const seen: number[] = [];
    let fill = 0;
    // 40 rounds of 3 records of 37..39 bytes (48-byte strides): 5 760 bytes through a 256-byte ring.
    for (let round = 0; round < 40; round++) {
      for (let k = 0; k < 3; k++) r.write(37 + k, ++fill & 0xff);
      for (const g of collect(c)) seen.push(g.fill);
      c.commit();
      expect(Number(r.consumer[0])).toBe(r.prod);
    }
    expect(seen).toEqual(Array.from({ length: 120 }, (_, i) => (i + 1) & 0xff));
    expect(r.prod).toBeGreaterThan(20 * SIZE);
  });

  it('publishes the consumer position only on commit', () => {
    const r = new FakeRing();
    r.write(10, 1);
    r.write(10, 2);
    const c = r.cursor();
    collect(c);
    expect(r.consumer[0]).toBe(0n);
    expect(c.available()).toBe(0);
    c.commit();
    expect(r.consumer[0]).toBe(BigInt(r.prod));
  });

  it('a new cursor starts at the published consumer position', () => {
    const r = new FakeRing();
    r.write(10, 1);
    r.write(10, 2);
    const c = r.cursor();
    collect(c, 1);
    c.commit();
    expect(collect(r.cursor()).map((g) => g.fill)).toEqual([2]);
  });

  it('maxRecords bounds one drain', () => {
    const r = new FakeRing();
    for (let i = 1; i <= 5; i++) r.write(4, i);
    const c = r.cursor();
    expect(collect(c, 2).map((g) => g.fill)).toEqual([1, 2]);
    expect(collect(c).map((g) => g.fill)).toEqual([3, 4, 5]);
  });

  it('a throwing handler skips only its record', () => {
    const r = new FakeRing();
    for (let i = 1; i <= 3; i++) r.write(4, i);
    const c = r.cursor();
    expect(() =>
      c.drain((view, off) => {
        if (view.getUint8(off) === 2) throw new Error('bad record');
      }),
    ).toThrow('bad record');
    expect(collect(c).map((g) => g.fill)).toEqual([3]);
  });

  it('stops at a header longer than what was produced (torn/corrupt)', () => {
    const r = new FakeRing();
    r.write(10, 1);
    r.producer[0] = 8n; // producer claims only the header was written
    const step = r.cursor().drain(() => {});
    expect(step).toEqual({ records: 0, discarded: 0, busy: true, stall: { kind: 'short', pos: 0, len: 10 } });
  });

  it('stops at a length no record of the ring can have (bad_length)', () => {
    const r = new FakeRing();
    r.write(10, 1);
    r.commit(0, SIZE); // a header longer than the whole data area
    const step = r.cursor().drain(() => {});
    expect(step.stall).toEqual({ kind: 'bad_length', pos: 0, len: SIZE });
  });

  it.each([
    [100, 0],
    [256, 4],
  ])('rejects a bad geometry (size %d, offset %d)', (size, off) => {
    const r = new FakeRing();
    expect(() => new RingCursor(r.data, off, size, { consumer: r.consumer, producer: r.producer })).toThrow(RangeError);
  });
});

describe('a recorded ring laid flat (stream.ts), read by the same walk', () => {
  const rec = (len: number, fill: number) => new Uint8Array(len).fill(fill);
  const lens = (bytes: Uint8Array): number[] => {
    const out: number[] = [];
    forEachRecord(bytes, (view, off, len) => {
      for (let k = 0; k < len; k++) expect(view.getUint8(off + k)).toBe(len);
      out.push(len);
    });
    return out;
  };
  const framed = frameRecords([rec(1, 1), rec(8, 8), rec(13, 13), rec(0, 0)]);
  const setBits = (bytes: Uint8Array, at: number, bits: number): Uint8Array => {
    const copy = bytes.slice();
    const dv = new DataView(copy.buffer);
    dv.setUint32(at, (dv.getUint32(at, true) | bits) >>> 0, true);
    return copy;
  };

  it.each([
    ['every record, padded to 8', framed, [1, 8, 13, 0]],
    ['a discarded record is skipped', setBits(framed, 16, RINGBUF_DISCARD_BIT), [1, 13, 0]],
    ['a busy record ends the stream', setBits(framed, 32, RINGBUF_BUSY_BIT), [1, 8]],
    ['a record cut short ends the stream', framed.subarray(0, 50), [1, 8]],
    ['an unaligned copy reads the same', (() => {
      const b = new Uint8Array(framed.length + 1);
      b.set(framed, 1);
      return b.subarray(1);
    })(), [1, 8, 13, 0]],
  ])('%s', (_what, bytes, want) => expect(lens(bytes)).toEqual(want));

  it('FrameWriter grows and frames like frameRecords', () => {
    const w = new FrameWriter(16);
    for (const r of [rec(1, 1), rec(8, 8), rec(13, 13), rec(0, 0)]) w.add(new DataView(r.buffer), 0, r.length);
    expect(w.records).toBe(4);
    expect(w.bytes()).toEqual(framed);
  });
});

describe('StallGuard: a stuck or impossible header is corruption, the ring resynchronises', () => {
  /** Drain with the guard's verdict, the way RingBufferConsumer does; returns the fills seen and the verdicts. */
  function drainGuarded(r: FakeRing, c: RingCursor, g: StallGuard): { fills: number[]; why: string[]; skipped: number } {
    const fills: number[] = [];
    const why: string[] = [];
    let skipped = 0;
    for (;;) {
      const step = c.drain((view, off) => void fills.push(view.getUint8(off)));
      c.commit();
      if (!step.stall) {
        g.clear();
        break;
      }
      const w = g.check(step.stall, c.available(), SIZE);
      if (w === undefined) break;
      why.push(w);
      skipped += c.skipToProducer();
    }
    return { fills, why, skipped };
  }

  it('a busy header with data after it: waited for, then skipped after stallMs; later records decode', () => {
    let now = 0;
    const g = new StallGuard(2000, () => now);
    const r = new FakeRing();
    const c = r.cursor();
    r.write(10, 1);
    r.write(12, 2, RINGBUF_BUSY_BIT); // never committed
    r.write(14, 3);
    expect(drainGuarded(r, c, g)).toEqual({ fills: [1], why: [], skipped: 0 });
    now = 1999;
    expect(drainGuarded(r, c, g).why).toEqual([]);
    now = 2500;
    const d = drainGuarded(r, c, g);
    expect(d.why).toEqual(['stayed busy for 2.5 s with 24 bytes written after it']);
    expect(d.skipped).toBe(recordStride(12) + recordStride(14));
    r.write(9, 4);
    expect(drainGuarded(r, c, g).fills).toEqual([4]);
  });

  it('a busy header with nothing after it is a producer at work, never corruption', () => {
    let now = 0;
    const g = new StallGuard(100, () => now);
    const r = new FakeRing();
    const c = r.cursor();
    r.write(12, 2, RINGBUF_BUSY_BIT);
    drainGuarded(r, c, g);
    now = 1e9;
    expect(drainGuarded(r, c, g)).toEqual({ fills: [], why: [], skipped: 0 });
  });

  it('a length past the ring is corruption at once: skipped to the producer position', () => {
    const g = new StallGuard(2000, () => 0);
    const r = new FakeRing();
    const c = r.cursor();
    r.write(10, 1);
    const bad = r.write(16, 2);
    r.write(20, 3);
    r.commit(bad, 0x3fffffff);
    const d = drainGuarded(r, c, g);
    expect(d.fills).toEqual([1]);
    expect(d.why).toEqual([`has length ${0x3fffffff}, which does not fit in a ${SIZE}-byte ring`]);
    expect(d.skipped).toBe(recordStride(16) + recordStride(20));
    expect(c.cons).toBe(r.prod);
  });
});
