/**
 * A recorded byte stream of raw records, framed exactly like the BPF ring buffer frames them (u32 length,
 * u32 unused, the record, padding to 8 bytes): what the decode benchmark replays, and what a copy of a
 * ring's data area looks like. Busy/discard bits are honoured the same way.
 */
import { RINGBUF_BUSY_BIT, RINGBUF_DISCARD_BIT, RINGBUF_HDR_SZ, recordStride, type RecordHandler } from '../ringbuf/records.js';
import type { Decoder } from './decoder.js';

/** Frame raw records into one stream. */
export function frameRecords(records: readonly Uint8Array[]): Uint8Array {
  const total = records.reduce((n, r) => n + recordStride(r.length), 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  let at = 0;
  for (const r of records) {
    dv.setUint32(at, r.length, true);
    out.set(r, at + RINGBUF_HDR_SZ);
    at += recordStride(r.length);
  }
  return out;
}

/** Hand every record of a framed stream to `onRecord` (zero-copy); returns the records delivered. */
export function forEachRecord(bytes: Uint8Array, onRecord: RecordHandler): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  let n = 0;
  while (at + RINGBUF_HDR_SZ <= bytes.length) {
    const hdr = dv.getUint32(at, true);
    if (hdr & RINGBUF_BUSY_BIT) break;
    const len = hdr & 0x3fffffff;
    if (at + RINGBUF_HDR_SZ + len > bytes.length) break; // cut short: the tail is not a whole record
    if (!(hdr & RINGBUF_DISCARD_BIT)) {
      onRecord(dv, at + RINGBUF_HDR_SZ, len);
      n++;
    }
    at += recordStride(len);
  }
  return n;
}

/** Decode a framed stream with `decoder`; returns the records decoded. */
export function decodeStream(bytes: Uint8Array, decoder: Decoder): number {
  return forEachRecord(bytes, (dv, off, len) => decoder.decode(dv, off, len));
}
