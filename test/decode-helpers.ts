// Shared by the decode*.test.ts files: build raw kt_* records and run them through a real Decoder.
import { Decoder } from '../src/decode/decoder.js';
import { encodeIoctl, type IoctlInit } from './helpers/kt-records.js';
import type { IoctlRecord, TraceRecord } from '../src/decode/records.js';
import { encode, type CValue, type RecordType } from '../src/cdata/layout.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';

export const cmdOf = (name: string): number => ioctlByName(name).cmd;

/** Bytes of `type` holding `value` (partial values leave zeros), plus `extra` trailing bytes. */
export function bytesOf(type: RecordType, value: CValue, extra = 0): Uint8Array {
  const b = new Uint8Array(type.size + extra);
  encode(type, new DataView(b.buffer), value);
  return b;
}

/** Write `value` of `type` at byte `off` of `b`. */
export function put(b: Uint8Array, type: RecordType, value: CValue, off: number): Uint8Array {
  encode(type, new DataView(b.buffer, b.byteOffset, b.byteLength), value, off);
  return b;
}

export class Harness {
  readonly out: TraceRecord[] = [];
  readonly decoder: Decoder;

  constructor(opts: { lean?: boolean } = {}) {
    this.decoder = new Decoder({ emit: (r) => this.out.push(r), lean: opts.lean });
  }

  feed(raw: Uint8Array): TraceRecord[] {
    const start = this.out.length;
    this.decoder.decode(new DataView(raw.buffer, raw.byteOffset, raw.byteLength), 0, raw.length);
    return this.out.slice(start);
  }

  /** Decode one ioctl record; returns the ioctl record it produced. */
  ioctl(init: Partial<IoctlInit> & { cmd: number }): IoctlRecord {
    const recs = this.feed(encodeIoctl({ ts_ns: 2_000, enter_ns: 1_000, pid: 100, fd: 10, ...init }));
    const r = recs.find((x): x is IoctlRecord => x.type === 'ioctl');
    if (!r) throw new Error(`no ioctl record decoded (got ${JSON.stringify(recs)})`);
    return r;
  }
}
