/**
 * A recorded ring: raw records framed exactly as the BPF ring buffer frames them (u32 length with the busy
 * and discard bits, u32 unused, the record, zero padding to 8), laid out flat in a file or a buffer. It is
 * what the decoder benchmark records and replays, and what a copy of a ring's data area looks like. A stream
 * holds whole records as the ring pads them; it is read with the ring's own record walk (records.ts), as a
 * ring that never wraps, so busy and discard bits are honoured the same way.
 */
import { RINGBUF_HDR_SZ, recordStride, walkRecords, type RecordHandler } from './records.js';

/** A stream is addressed like a ring whose positions never wrap: streams up to 2 GiB. */
const FLAT = 0x7fffffff;

/** Frames records one at a time into a growing buffer. */
export class FrameWriter {
  private buf: Uint8Array;
  private dv: DataView;
  private at = 0;
  records = 0;

  constructor(initialBytes = 1 << 16) {
    this.buf = new Uint8Array(Math.max(16, initialBytes));
    this.dv = new DataView(this.buf.buffer);
  }

  /** Append the `len` bytes at `off` of `view` as one record. */
  add(view: DataView, off: number, len: number): void {
    const stride = recordStride(len);
    if (this.at + stride > this.buf.length) {
      const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.at + stride));
      bigger.set(this.buf.subarray(0, this.at));
      this.buf = bigger;
      this.dv = new DataView(bigger.buffer);
    }
    this.dv.setUint32(this.at, len, true);
    this.dv.setUint32(this.at + 4, 0, true);
    this.buf.set(new Uint8Array(view.buffer, view.byteOffset + off, len), this.at + RINGBUF_HDR_SZ);
    this.buf.fill(0, this.at + RINGBUF_HDR_SZ + len, this.at + stride);
    this.at += stride;
    this.records++;
  }

  /** The stream so far (a view of the writer's buffer, valid until the next add). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.at);
  }
}

/** Frame raw records into one stream. */
export function frameRecords(records: readonly Uint8Array[]): Uint8Array {
  const w = new FrameWriter(records.reduce((n, r) => n + recordStride(r.length), 0));
  for (const r of records) w.add(new DataView(r.buffer, r.byteOffset, r.byteLength), 0, r.length);
  return w.bytes();
}

/**
 * Hand every record of a framed stream to `onRecord` (zero-copy); returns the records delivered. Discarded
 * records are skipped; a busy record or a record cut short ends the stream.
 */
export function forEachRecord(bytes: Uint8Array, onRecord: RecordHandler): number {
  // The walk reads headers as 32-bit words, which need a 4-byte aligned view: copy the rare unaligned input.
  const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const words = new Uint32Array(b.buffer, b.byteOffset, b.byteLength >>> 2);
  return walkRecords(view, words, FLAT, { cons: 0 }, b.byteLength, onRecord, Number.MAX_SAFE_INTEGER).records;
}
