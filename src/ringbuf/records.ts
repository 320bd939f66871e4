/**
 * Pure position arithmetic of a BPF ring buffer (kernel/bpf/ringbuf.c), over plain memory: no syscalls,
 * so it is unit-tested on a plain buffer (test/ringbuf-records.test.ts) and driven by the mmap reader
 * (reader.ts) over the kernel's pages.
 *
 * Layout the kernel gives us: a consumer position (u64, ours to publish), a producer position (u64, the
 * kernel's), and a data area of `size` bytes (a power of two). The kernel offers it mapped twice back to
 * back, so a record that wraps past the end is contiguous; the reader maps it once (the second mapping
 * counts as `size` more bytes of RSS) and the rare record that wraps is joined in a scratch buffer. Each record is an 8-byte header — u32 len whose top
 * bits are BUSY (1<<31, still being written: stop here) and DISCARD (1<<30, skip it), then a u32 page
 * offset the kernel uses internally — followed by len bytes; the next record starts round_up(len + 8, 8)
 * later. Positions grow forever; `pos & (size - 1)` is the place in the data area.
 *
 * The record walk (walkRecords) is written once and serves both the live ring (RingCursor) and a recorded
 * copy of one laid out flat (stream.ts).
 */

export const RINGBUF_BUSY_BIT = 0x80000000;
export const RINGBUF_DISCARD_BIT = 0x40000000;
export const RINGBUF_HDR_SZ = 8;
const LEN_MASK = 0x3fffffff;

/** Called with a view over the data area, the byte offset of the record's first data byte, and its length. */
export type RecordHandler = (view: DataView, offset: number, len: number) => void;

/** Bytes a record of `len` data bytes occupies in the ring: header plus data, rounded up to 8. */
export function recordStride(len: number): number {
  return ((len & LEN_MASK) + RINGBUF_HDR_SZ + 7) & ~7;
}

/** The two u64 position words: `consumer` is ours (published on commit), `producer` is the kernel's. */
export interface RingPositionWords {
  consumer: BigUint64Array;
  producer: BigUint64Array;
}

export interface DrainStep {
  /** Records handed to the handler. */
  records: number;
  /** Records skipped because the producer discarded them. */
  discarded: number;
  /** True when draining stopped at a record still being written (it will be read next time). */
  busy: boolean;
  /**
   * Why draining stopped short of the producer position, when it did: `busy` (the record is still being
   * written), `short` (a finished record claiming more bytes than were produced: a torn read, retried — or
   * corruption, if it stays), `bad_length` (a length no record in this ring can have: corruption). `len` is
   * the header's length with the flag bits masked off.
   */
  stall?: { kind: 'busy' | 'short' | 'bad_length'; pos: number; len: number };
}

/**
 * A consumer cursor over one ring: reads records between the local consumer position and the producer
 * position, advances the local position, and publishes it on commit() so the producer can reuse the space.
 */
export class RingCursor {
  /** Local consumer position: everything before it has been handed out (published on commit()). */
  cons: number;
  readonly size: number;
  private readonly mask: number;
  private readonly view: DataView;
  private readonly words: Uint32Array;
  private readonly pos: RingPositionWords;

  /**
   * @param data  the data area at `dataOffset`, 8-byte aligned: `size` bytes mapped once, or 2 × size (the
   *              same bytes mapped twice; records that wrap are then read in place).
   * @param size  ring size in bytes (a power of two).
   */
  constructor(data: ArrayBuffer, dataOffset: number, size: number, positions: RingPositionWords) {
    if (size <= 0 || (size & (size - 1)) !== 0) throw new RangeError(`ring size ${size} is not a power of two`);
    if (dataOffset % 8 !== 0) throw new RangeError('ring data area must be 8-byte aligned');
    if (data.byteLength < dataOffset + size) throw new RangeError(`ring data area must hold the ring's ${size} bytes`);
    const mapped = data.byteLength >= dataOffset + 2 * size ? 2 * size : size;
    this.size = size;
    this.mask = size - 1;
    this.view = new DataView(data, dataOffset, mapped);
    this.words = new Uint32Array(data, dataOffset, mapped / 4);
    this.pos = positions;
    this.cons = Number(Atomics.load(positions.consumer, 0));
  }

  /** The producer position, read with acquire semantics. */
  producer(): number {
    return Number(Atomics.load(this.pos.producer, 0));
  }

  /** Bytes written by the producer and not yet consumed (including busy/discarded records). */
  available(): number {
    return this.producer() - this.cons;
  }

  /**
   * Hand every complete record up to the producer position to `onRecord` (zero-copy: the view is the data
   * area itself; copy what must outlive the call). Stops at a busy record or after `maxRecords`. The local
   * position advances past a record before its handler runs, so a throwing handler skips only that record.
   */
  drain(onRecord: RecordHandler, maxRecords = Number.MAX_SAFE_INTEGER): DrainStep {
    return walkRecords(this.view, this.words, this.mask, this, this.producer(), onRecord, maxRecords);
  }

  /** Publish the local consumer position (release): the producer may now overwrite consumed space. */
  commit(): void {
    Atomics.store(this.pos.consumer, 0, BigInt(this.cons));
  }

  /**
   * Resynchronise after a corrupt or stuck header: there is no marker to find the next record by, but the
   * producer position is always a record boundary, so skip everything up to it (and publish). Returns the
   * bytes skipped.
   */
  skipToProducer(): number {
    const prod = this.producer();
    const skipped = Math.max(0, prod - this.cons);
    this.cons += skipped;
    this.commit();
    return skipped;
  }
}

let scratch = new Uint8Array(0);
let scratchView = new DataView(scratch.buffer);

/**
 * A record whose data starts at `dataAt` (≤ size) of a ring mapped once and runs past its end: the two
 * parts joined in a scratch buffer (valid until the next wrapping record, like the ring memory itself).
 */
function joined(view: DataView, dataAt: number, len: number, size: number): DataView {
  if (scratch.length < len) {
    scratch = new Uint8Array(Math.max(len, 4096));
    scratchView = new DataView(scratch.buffer);
  }
  const ring = new Uint8Array(view.buffer, view.byteOffset, size);
  const first = size - dataAt;
  scratch.set(ring.subarray(dataAt, size), 0);
  scratch.set(ring.subarray(0, len - first), first);
  return scratchView;
}

/**
 * Hand every complete record from `pos.cons` up to `prod` to `onRecord`, advancing `pos.cons` past each one
 * before its handler runs (a throwing handler skips only its own record). `words` and `view` cover the same
 * bytes; a position's place in them is `pos & mask`. Stops at a busy record, at a header claiming more than
 * was produced (a torn read: retried later), at a length no record of this ring can have, or after
 * `maxRecords`; the step's `stall` says which (the consumer decides when a stall is corruption).
 */
export function walkRecords(
  view: DataView,
  words: Uint32Array,
  mask: number,
  pos: { cons: number },
  prod: number,
  onRecord: RecordHandler,
  maxRecords: number,
): DrainStep {
  let cons = pos.cons;
  let records = 0;
  let discarded = 0;
  let busy = false;
  let stall: DrainStep['stall'];
  // The largest record this ring can hold: a header, and a data area no bigger than the ring.
  const maxLen = mask + 1 - RINGBUF_HDR_SZ;
  try {
    while (cons < prod && records < maxRecords) {
      const at = cons & mask;
      // A plain load, not Atomics.load (≈14 vs ≈20 ns per record here): x86-64 never reorders loads with
      // loads, and V8 keeps typed-array loads in program order, so the data read after this header is at
      // least as new as the header — the acquire the kernel's smp_store_release of the header pairs with.
      const hdr = words[at >>> 2];
      const len = hdr & LEN_MASK;
      if (len > maxLen) {
        busy = true;
        stall = { kind: 'bad_length', pos: cons, len };
        break;
      }
      if (hdr & RINGBUF_BUSY_BIT) {
        busy = true;
        stall = { kind: 'busy', pos: cons, len };
        break;
      }
      const stride = (len + RINGBUF_HDR_SZ + 7) & ~7;
      if (stride > prod - cons) {
        // A header claiming more than was produced can only be a torn read or corruption: stop, retry later.
        busy = true;
        stall = { kind: 'short', pos: cons, len };
        break;
      }
      cons += stride; // advanced before the handler runs: a throwing handler skips only its own record
      if (hdr & RINGBUF_DISCARD_BIT) {
        discarded++;
        continue;
      }
      records++;
      const dataAt = at + RINGBUF_HDR_SZ;
      if (dataAt + len <= view.byteLength) onRecord(view, dataAt, len);
      else onRecord(joined(view, dataAt, len, mask + 1), 0, len); // wraps past the end of a single mapping
    }
  } finally {
    pos.cons = cons;
  }
  return stall ? { records, discarded, busy, stall } : { records, discarded, busy };
}
