/**
 * Records for the fuzzer: mutations of real records (bit flips, interesting values written into the
 * fields the decoder trusts — lengths, counts, request numbers, enums —, truncation, extension, splices of
 * two records, a garbled data area) and records made from nothing (random bytes, or a valid header of a
 * random type over random bytes). Every field position comes from src/bpf/event-layout.ts.
 */
import {
  COPY,
  EXIT,
  FD,
  FORK,
  HDR,
  IOCTL,
  KT_EV_COPY,
  KT_EV_EXIT,
  KT_EV_FD,
  KT_EV_FORK,
  KT_EV_IOCTL,
  KT_EV_MMAP,
  KT_EV_THREAD_EXIT,
  MIN_LEN,
  MMAP,
} from '../../src/bpf/event-layout.js';
import { IOCTLS } from '../../src/kvm/abi/ioctl-table.js';
import type { Rng } from './rng.js';

const I16 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x1ff, 0x200, 0x201, 0x3ff, 0x400, 0x7fff, 0x8000, 0xfffe, 0xffff];
const I32 = [0, 1, 2, 3, 4, 5, 10, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

type Width = 2 | 4 | 8;
interface Field {
  off: number;
  width: Width;
}

const f = (off: number, width: Width): Field => ({ off, width });
const HDR_FIELDS = [f(HDR.type, 2), f(HDR.flags, 2), f(HDR.cpu, 4), f(HDR.ts_ns, 8), f(HDR.pid, 4), f(HDR.tid, 4)];

/** The fields of each record type a mutation aims at. */
const FIELDS: Record<number, Field[]> = {
  [KT_EV_IOCTL]: [
    ...HDR_FIELDS,
    f(IOCTL.enter_ns, 8),
    f(IOCTL.arg, 8),
    f(IOCTL.ret, 8),
    f(IOCTL.fd, 4),
    f(IOCTL.cmd, 4),
    f(IOCTL.run_kaddr, 8),
    f(IOCTL.vcpu_id, 4),
    f(IOCTL.exit_reason, 4),
    f(IOCTL.pio_data, 8),
    f(IOCTL.in_len, 2),
    f(IOCTL.out_len, 2),
    f(IOCTL.fd_kind, 4),
  ],
  [KT_EV_FD]: [...HDR_FIELDS, f(FD.fd, 4), f(FD.op, 4), f(FD.kind, 4), f(FD.ret, 4)],
  [KT_EV_MMAP]: [...HDR_FIELDS, f(MMAP.addr, 8), f(MMAP.len, 8), f(MMAP.pgoff, 8), f(MMAP.fd, 4), f(MMAP.kind, 4), f(MMAP.prot, 4), f(MMAP.mflags, 4)],
  [KT_EV_EXIT]: [...HDR_FIELDS, f(EXIT.exit_code, 4)],
  [KT_EV_THREAD_EXIT]: [...HDR_FIELDS, f(EXIT.exit_code, 4)],
  [KT_EV_COPY]: [...HDR_FIELDS, f(COPY.uaddr, 8), f(COPY.len, 8), f(COPY.dir, 4), f(COPY.cmd, 4), f(COPY.fd, 4)],
  [KT_EV_FORK]: [...HDR_FIELDS, f(FORK.child_pid, 4), f(FORK.inherited, 4)],
};

const KNOWN_CMDS = IOCTLS.map((d) => d.cmd >>> 0);
const TYPES = Object.keys(MIN_LEN).map(Number);

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

function put(b: Uint8Array, fld: Field, value: bigint): void {
  if (fld.off + fld.width > b.length) return;
  const dv = view(b);
  if (fld.width === 2) dv.setUint16(fld.off, Number(value & 0xffffn), true);
  else if (fld.width === 4) dv.setUint32(fld.off, Number(value & 0xffffffffn), true);
  else dv.setBigUint64(fld.off, BigInt.asUintN(64, value), true);
}

function interesting(rng: Rng, width: Width): bigint {
  if (width === 2) return BigInt(rng.pick(I16));
  const v = BigInt(rng.pick(I32));
  if (width === 4) return v;
  return rng.pick([v, -v, v << 32n, (1n << 63n) + v, (1n << 53n) + v, 0xffffffffffffffffn]);
}

const typeOf = (b: Uint8Array): number => (b.length >= 2 ? view(b).getUint16(HDR.type, true) : -1);

/** A request number: a real one, one with its size or direction bits changed, or any. */
function requestNumber(rng: Rng): number {
  const c = rng.pick(KNOWN_CMDS);
  switch (rng.int(4)) {
    case 0:
      return c;
    case 1:
      return ((c & ~(0x3fff << 16)) | (rng.int(0x4000) << 16)) >>> 0; // size field
    case 2:
      return ((c & 0x3fffffff) | (rng.int(4) << 30)) >>> 0; // direction bits
    default:
      return ((0xae << 8) | rng.int(256) | (rng.u32() & 0xffff0000)) >>> 0; // any KVM-type request
  }
}

/** One mutation of `rec` (a copy; `other` is a second record to splice with). */
function mutateOnce(rec: Uint8Array, other: Uint8Array, rng: Rng): Uint8Array {
  let b = rec.slice();
  const fields = FIELDS[typeOf(b)] ?? HDR_FIELDS;
  switch (rng.int(11)) {
    case 0: // bit flips
      for (let i = rng.int(8) + 1; i > 0 && b.length > 0; i--) b[rng.int(b.length)] ^= 1 << rng.int(8);
      break;
    case 1: // an interesting byte
      if (b.length > 0) b[rng.int(b.length)] = rng.pick([0, 1, 0x7f, 0x80, 0xfe, 0xff]);
      break;
    case 2:
    case 3: {
      // an interesting value in a field the decoder reads
      const fld = rng.pick(fields);
      put(b, fld, interesting(rng, fld.width));
      break;
    }
    case 4: // truncated
      b = b.subarray(0, rng.int(b.length + 1)).slice();
      break;
    case 5: {
      // extended with random bytes
      const more = rng.bytes(rng.int(600) + 1);
      const c = new Uint8Array(b.length + more.length);
      c.set(b);
      c.set(more, b.length);
      b = c;
      break;
    }
    case 6: // another (or no) record type
      put(b, f(HDR.type, 2), BigInt(rng.chance(0.8) ? rng.pick(TYPES) : rng.int(0x10000)));
      break;
    case 7: // a request number
      if (typeOf(b) === KT_EV_IOCTL) put(b, f(IOCTL.cmd, 4), BigInt(requestNumber(rng)));
      else if (typeOf(b) === KT_EV_COPY) put(b, f(COPY.cmd, 4), BigInt(requestNumber(rng)));
      else put(b, rng.pick(fields), interesting(rng, 4));
      break;
    case 8: // in/out lengths against the record's real length
      if (typeOf(b) === KT_EV_IOCTL && b.length >= IOCTL.data) {
        const room = b.length - IOCTL.data;
        put(b, f(IOCTL.in_len, 2), BigInt(rng.chance(0.5) ? rng.int(room + 1) : rng.int(0x10000)));
        put(b, f(IOCTL.out_len, 2), BigInt(rng.chance(0.5) ? rng.int(room + 1) : rng.int(0x10000)));
      } else if (b.length > 0) b[rng.int(b.length)] = rng.u32() & 0xff;
      break;
    case 9: // garbage data area: args, flexible-array counts, kvm_run snapshot
      if (b.length > IOCTL.data) b.set(rng.bytes(b.length - IOCTL.data), IOCTL.data);
      else if (b.length > 0) b[rng.int(b.length)] = rng.u32() & 0xff;
      break;
    default: {
      // splice: the head of one record, the tail of another
      const cut = rng.int(Math.min(b.length, other.length) + 1);
      const c = new Uint8Array(cut + (other.length - cut));
      c.set(b.subarray(0, cut));
      c.set(other.subarray(cut), cut);
      b = c;
    }
  }
  return b;
}

/** `rec` with one to four mutations. */
export function mutate(rec: Uint8Array, other: Uint8Array, rng: Rng): Uint8Array {
  let b = rec;
  for (let i = rng.int(4) + 1; i > 0; i--) b = mutateOnce(b, other, rng);
  return b;
}

/** A record made from nothing: random bytes, or a valid header of a random type over random bytes. */
export function randomRecord(rng: Rng): Uint8Array {
  if (rng.chance(0.3)) return rng.bytes(rng.int(rng.chance(0.5) ? 64 : 1400));
  const type = rng.pick(TYPES);
  const len = MIN_LEN[type] + (rng.chance(0.5) ? 0 : rng.int(rng.chance(0.8) ? 64 : 1100));
  const b = rng.bytes(len);
  put(b, f(HDR.type, 2), BigInt(type));
  if (type === KT_EV_IOCTL) {
    put(b, f(IOCTL.cmd, 4), BigInt(requestNumber(rng)));
    const room = len - IOCTL.data;
    const inLen = rng.int(room + 1);
    put(b, f(IOCTL.in_len, 2), BigInt(inLen));
    put(b, f(IOCTL.out_len, 2), BigInt(rng.int(room - inLen + 1)));
    put(b, f(IOCTL.fd_kind, 4), BigInt(rng.int(6)));
  }
  // A small pid and fd now and then, so random records meet the state the real ones built.
  if (rng.chance(0.5)) put(b, f(HDR.pid, 4), BigInt(rng.int(4)));
  return b;
}
