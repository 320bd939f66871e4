/**
 * Decoding a recorded ring (src/ringbuf/stream.ts: records framed as the ring frames them): what the
 * decoder benchmark replays.
 */
import { forEachRecord } from '../ringbuf/stream.js';
import type { Decoder } from './decoder.js';

/** Decode a framed stream with `decoder`; returns the records decoded. */
export function decodeStream(bytes: Uint8Array, decoder: Decoder): number {
  return forEachRecord(bytes, (dv, off, len) => decoder.decode(dv, off, len));
}
