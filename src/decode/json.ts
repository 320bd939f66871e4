/**
 * JSON text of records, written as bytes straight into the chunks the JSONL sink hands to its stream.
 *
 * Why not JSON.stringify + join: per KVM_RUN record (≈360 bytes of JSON) that cost ≈2.5 µs of CPU here —
 * the string build, then flattening and UTF-8 encoding the joined chunk, then collecting the garbage —
 * where the goal for the whole record path is 1 µs. Most of a KVM_RUN line repeats the one before it on the
 * same thread: pid, tid, comm, fd, fd kind, VM, vCPU, request, name, size, direction and argument, and for
 * an IO or MMIO exit everything but the data. So those members are encoded once per thread into a cached
 * byte segment, and a record is: two copies of cached bytes plus a handful of integers written digit by
 * digit (a 13-digit ts_ns through String() alone costs ≈120 ns).
 *
 * The fast path takes ioctl records that have exactly the contract's fixed members (+ an IO, MMIO or
 * two-member exit), each of the right type; anything else is written from JSON.stringify. Either way the
 * bytes are JSON.stringify's text of the record (test/decode-json.test.ts checks every record shape):
 * members in the contract's order (the decoder's insertion order), every cached value encoded by
 * JSON.stringify itself, integers as JSON writes them, strings outside printable ASCII or with " or \ left to
 * JSON.stringify.
 */
import type { ExitInfo, IoctlRecord, TraceRecord } from './records.js';

const ascii = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const q = JSON.stringify;

/**
 * A constant piece of every hot line, as 32-bit little-endian words: written with a few word stores (the
 * last word's spare bytes land past the line's end, inside the room ensure() keeps, and are overwritten by
 * what follows), where a byte loop or a Buffer copy of the same ~25 bytes cost 3-4 times as much.
 */
interface Constant {
  words: Uint32Array;
  len: number;
}
function constant(s: string): Constant {
  const b = Buffer.alloc((s.length + 3) & ~3, 0x20);
  b.write(s, 0, 'latin1');
  return { words: Uint32Array.from({ length: b.length / 4 }, (_, i) => b.readUInt32LE(4 * i)), len: s.length };
}
const OPEN_IOCTL = constant('{"type":"ioctl","ts_ns":');
const ENTER = constant(',"enter_ns":');
const ERRNO_NULL = constant(',"errno":null,"latency_ns":');
const ERRNO = constant(',"errno":');
const LATENCY = constant(',"latency_ns":');
/** Members of an ioctl record that are always present (type … latency_ns). */
const FIXED_IOCTL_MEMBERS = 18;
/** Slots of the per-thread caches (direct-mapped by tid). */
const SLOTS = 64;
/** Bound on a fast-path record's bytes beyond its cached segments: 5 integers, errno, data, punctuation. */
const FAST_SLACK = 256;

/** Printable ASCII without `"` and `\`: JSON.stringify writes such a string as itself in quotes. */
function plain(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

const isInt = Number.isSafeInteger;

/** The members pid … arg of one thread's last ioctl record, and their bytes `,"pid":…,"ret":`. */
interface CallSegment {
  tid: number;
  pid: number;
  comm: string;
  fd: number;
  fd_kind: string;
  vm: number | null;
  vcpu: number | null;
  cmd: string;
  name: string;
  size: number;
  dir: string;
  arg: string;
  bytes: Uint8Array;
}

/** An exit's members other than `data` (reason, code, then the reason's own), and their bytes `,"exit":{…`. */
interface ExitSegment {
  tid: number;
  reason: string;
  code: number;
  a: unknown;
  b: unknown;
  c: unknown;
  d: unknown;
  e: unknown;
  /** Members without `data`; whether `data` may follow. */
  members: number;
  data: boolean;
  bytes: Uint8Array;
  /** `bytes` followed by `,"data":` (the value is written per record). */
  withData: Uint8Array;
}

/** Member count of a plain object (for…in: no allocation, unlike Object.keys). */
function memberCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

function sameCall(s: CallSegment | undefined, r: IoctlRecord): s is CallSegment {
  return (
    s !== undefined && s.tid === r.tid && s.pid === r.pid && s.fd === r.fd && s.arg === r.arg && s.cmd === r.cmd &&
    s.comm === r.comm && s.fd_kind === r.fd_kind && s.vm === r.vm && s.vcpu === r.vcpu && s.name === r.name &&
    s.size === r.size && s.dir === r.dir
  );
}

function callSegment(r: IoctlRecord): CallSegment | undefined {
  if (!isInt(r.pid) || !isInt(r.tid) || !isInt(r.fd) || !isInt(r.size)) return undefined;
  if (typeof r.comm !== 'string' || typeof r.fd_kind !== 'string' || typeof r.cmd !== 'string') return undefined;
  if (typeof r.name !== 'string' || typeof r.dir !== 'string' || typeof r.arg !== 'string') return undefined;
  if ((r.vm !== null && !isInt(r.vm)) || (r.vcpu !== null && !isInt(r.vcpu))) return undefined;
  const text =
    `,"pid":${r.pid},"tid":${r.tid},"comm":${q(r.comm)},"fd":${r.fd},"fd_kind":${q(r.fd_kind)},"vm":${q(r.vm)},` +
    `"vcpu":${q(r.vcpu)},"cmd":${q(r.cmd)},"name":${q(r.name)},"size":${r.size},"dir":${q(r.dir)},"arg":${q(r.arg)},"ret":`;
  return {
    tid: r.tid, pid: r.pid, comm: r.comm, fd: r.fd, fd_kind: r.fd_kind, vm: r.vm, vcpu: r.vcpu, cmd: r.cmd,
    name: r.name, size: r.size, dir: r.dir, arg: r.arg, bytes: Buffer.from(text, 'utf8'),
  };
}

/** The exit shapes of the fast path, by reason: the members after `code`, before an optional `data`. */
const EXIT_MEMBERS: Record<string, readonly string[]> = {
  IO: ['direction', 'size', 'port', 'count', 'data_offset'],
  MMIO: ['phys_addr', 'len', 'is_write'],
};
const NO_MEMBERS: readonly string[] = [];

/** A value cached into an exit segment: JSON-exact and immutable (no objects). */
const scalar = (v: unknown): boolean => v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean';

function sameExit(s: ExitSegment | undefined, tid: number, e: ExitInfo): s is ExitSegment {
  if (s === undefined || s.tid !== tid || s.reason !== e.reason || s.code !== e.code) return false;
  if (memberCount(e) !== s.members + (e.data === undefined ? 0 : s.data ? 1 : -1)) return false;
  if (s.members === 2) return true; // {reason, code}: any reason (every exit in --lean)
  return e.reason === 'IO'
    ? s.a === e.direction && s.b === e.size && s.c === e.port && s.d === e.count && s.e === e.data_offset
    : s.a === e.phys_addr && s.b === e.len && s.c === e.is_write;
}

/** The exit's segment, when it has a fast-path shape (else undefined: the record goes to JSON.stringify). */
function exitSegment(tid: number, e: ExitInfo): ExitSegment | undefined {
  if (typeof e.reason !== 'string' || !isInt(e.code)) return undefined;
  const n = memberCount(e);
  // Two members is the lean shape of every reason; IO and MMIO with their details are the other two.
  const members = n === 2 ? NO_MEMBERS : (EXIT_MEMBERS[e.reason] ?? NO_MEMBERS);
  if (n !== 2 + members.length + (e.data === undefined ? 0 : 1)) return undefined;
  if (members.length === 0 && e.data !== undefined) return undefined;
  const vals = members.map((m) => e[m]);
  if (!vals.every(scalar)) return undefined;
  let text = `,"exit":{"reason":${q(e.reason)},"code":${e.code}`;
  members.forEach((m, i) => (text += `,${q(m)}:${q(vals[i])}`));
  return {
    tid, reason: e.reason, code: e.code, a: vals[0], b: vals[1], c: vals[2], d: vals[3], e: vals[4],
    members: 2 + members.length, data: members.length > 0, bytes: Buffer.from(text, 'utf8'), withData: Buffer.from(`${text},"data":`, 'utf8'),
  };
}

/**
 * Writes records as JSON lines into chunks of about `chunkBytes`; a full chunk (whole lines only) goes to
 * `onChunk` with the number of records in it, and the encoder continues in a fresh buffer (the chunk is the
 * receiver's from then on: a stream may still be writing it).
 */
export class JsonlEncoder {
  /** Records written through JSON.stringify (not of a fast-path shape). */
  slow = 0;
  private buf: Buffer;
  /** this.buf as a DataView: integers are written two digits (one 16-bit store) at a time. */
  private dv: DataView;
  private at = 0;
  /** Where the record being written starts (a chunk ends only between records). */
  private start = 0;
  private records = 0;
  private readonly calls: Array<CallSegment | undefined> = new Array(SLOTS).fill(undefined);
  private readonly exits: Array<ExitSegment | undefined> = new Array(SLOTS).fill(undefined);
  private readonly quoted = new Map<string, Uint8Array>();
  /** Chunk buffers the receiver is done with, reused: a fresh 260 KiB buffer costs 64 page faults here. */
  private readonly spare: Buffer[] = [];

  constructor(
    private readonly onChunk: (bytes: Buffer, records: number) => void,
    private readonly chunkBytes = 256 * 1024,
  ) {
    this.buf = this.fresh();
    this.dv = viewOf(this.buf);
  }

  /** A chunk handed to onChunk is written and its memory may be reused. */
  recycle(chunk: Buffer): void {
    if (chunk.buffer.byteLength === this.chunkBytes + 4096 && this.spare.length < 8) this.spare.push(Buffer.from(chunk.buffer, 0, chunk.buffer.byteLength));
  }

  private fresh(): Buffer {
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(this.chunkBytes + 4096);
  }

  /** Append `r` as one line. Throws (writing nothing) when JSON.stringify does (a BigInt, a cycle). */
  write(r: TraceRecord): void {
    this.start = this.at;
    try {
      if (r.type !== 'ioctl' || !this.ioctl(r)) {
        this.slow++;
        this.text(q(r));
      }
    } catch (e) {
      this.at = this.start;
      throw e;
    }
    this.buf[this.at++] = 10;
    this.records++;
    if (this.at >= this.chunkBytes) this.flush();
  }

  /** Hand what is buffered to onChunk now. */
  flush(): void {
    if (this.at === 0) return;
    const out = this.buf.subarray(0, this.at);
    const n = this.records;
    this.buf = this.fresh();
    this.dv = viewOf(this.buf);
    this.at = this.start = this.records = 0;
    this.onChunk(out, n);
  }

  /** Room for `n` more bytes (and a few of punctuation): a record never straddles two chunks. */
  private ensure(n: number): void {
    if (this.at + n + 8 <= this.buf.length) return;
    const partial = this.buf.subarray(this.start, this.at);
    const old = this.buf.subarray(0, this.start);
    const records = this.records;
    this.buf = Buffer.allocUnsafeSlow(Math.max(this.chunkBytes, partial.length + n) + 4096);
    this.dv = viewOf(this.buf);
    this.buf.set(partial, 0);
    this.at = partial.length;
    this.start = 0;
    this.records = 0;
    if (old.length > 0) this.onChunk(old, records);
  }

  private text(s: string): void {
    this.ensure(s.length * 3);
    this.at += this.buf.write(s, this.at, 'utf8');
  }

  private bytes(b: Uint8Array): void {
    const n = b.length;
    if (n > 32) this.buf.set(b, this.at);
    else for (let i = 0, buf = this.buf, at = this.at; i < n; i++) buf[at + i] = b[i];
    this.at += n;
  }

  private constant(c: Constant): void {
    const dv = this.dv;
    const w = c.words;
    for (let i = 0, at = this.at; i < w.length; i++, at += 4) dv.setUint32(at, w[i], true);
    this.at += c.len;
  }

  /** A safe integer as JSON writes it. */
  private int(n: number): void {
    const dv = this.dv;
    let at = this.at;
    if (n < 0) {
      this.buf[at++] = 45;
      n = -n;
    }
    if (n < 1e8) {
      this.at = digits(dv, at, n);
      return;
    }
    // Above 1e8 (every ts_ns): the high part (< 9.1e7 for a safe integer) and eight low digits, int32 math.
    const hi = (n / 1e8) >>> 0;
    let lo = n - hi * 1e8;
    at = digits(dv, at, hi);
    for (let i = at + 6; i >= at; i -= 2) {
      const q = (lo / 100) | 0;
      dv.setUint16(i, PAIRS[lo - q * 100], true);
      lo = q;
    }
    this.at = at + 8;
  }

  /** A member value that is not cached: integers and plain strings directly, anything else by JSON.stringify. */
  private value(v: unknown): void {
    if (typeof v === 'number' && isInt(v)) this.int(v);
    else if (typeof v === 'string' && v.length < 64 && plain(v)) {
      this.buf[this.at++] = 34;
      this.at += this.buf.write(v, this.at, 'latin1');
      this.buf[this.at++] = 34;
    } else this.text(q(v) ?? 'null');
  }

  private quote(s: string): Uint8Array {
    let b = this.quoted.get(s);
    if (b === undefined) {
      if (this.quoted.size >= 1024) this.quoted.clear();
      b = Buffer.from(q(s), 'utf8');
      this.quoted.set(s, b);
    }
    return b;
  }

  /** The fast path; false (nothing written) when `r` is not of its shape. */
  private ioctl(r: IoctlRecord): boolean {
    const e = r.exit;
    if (memberCount(r) !== FIXED_IOCTL_MEMBERS + (e === undefined ? 0 : 1)) return false;
    if (!isInt(r.ts_ns) || !isInt(r.enter_ns) || !isInt(r.ret) || !isInt(r.latency_ns)) return false;
    if (r.errno !== null && typeof r.errno !== 'string') return false;
    const slot = r.tid & (SLOTS - 1);
    let call = this.calls[slot];
    if (!sameCall(call, r)) {
      call = callSegment(r);
      if (call === undefined) return false;
      this.calls[slot] = call;
    }
    let exit: ExitSegment | undefined;
    if (e !== undefined) {
      exit = this.exits[slot];
      if (!sameExit(exit, r.tid, e)) {
        exit = exitSegment(r.tid, e);
        if (exit === undefined) return false;
        this.exits[slot] = exit;
      }
    }
    this.ensure(call.bytes.length + (exit ? exit.bytes.length : 0) + (r.errno === null ? 0 : r.errno.length * 6) + FAST_SLACK);
    this.constant(OPEN_IOCTL);
    this.int(r.ts_ns);
    this.constant(ENTER);
    this.int(r.enter_ns);
    this.bytes(call.bytes);
    this.int(r.ret);
    if (r.errno === null) this.constant(ERRNO_NULL);
    else {
      this.constant(ERRNO);
      this.bytes(this.quote(r.errno));
      this.constant(LATENCY);
    }
    this.int(r.latency_ns);
    if (exit !== undefined) {
      if (e!.data !== undefined) {
        this.bytes(exit.withData);
        this.value(e!.data);
      } else this.bytes(exit.bytes);
      this.buf[this.at++] = 125;
    }
    this.buf[this.at++] = 125;
    return true;
  }
}

/** "00" … "99" as 16-bit little-endian words (the first digit in the low byte): one store per two digits. */
const PAIRS = Uint16Array.from({ length: 100 }, (_, i) => (48 + ((i / 10) | 0)) | ((48 + (i % 10)) << 8));

const viewOf = (b: Buffer): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** Digits of an integer 0 ≤ n < 1e8 at `at` (int32 arithmetic); returns the end. */
function digits(dv: DataView, at: number, n: number): number {
  const len = n < 10 ? 1 : n < 100 ? 2 : n < 1e3 ? 3 : n < 1e4 ? 4 : n < 1e5 ? 5 : n < 1e6 ? 6 : n < 1e7 ? 7 : 8;
  let i = at + len;
  let v = n;
  while (v >= 100) {
    const d = (v / 100) | 0;
    i -= 2;
    dv.setUint16(i, PAIRS[v - d * 100], true);
    v = d;
  }
  if (v >= 10) dv.setUint16(i - 2, PAIRS[v], true);
  else dv.setUint8(i - 1, 48 + v);
  return at + len;
}

/** The record as one line of JSON (without the newline), through the same encoder the sink uses. */
export function recordJson(r: TraceRecord): string {
  let out = '';
  const enc = new JsonlEncoder((b) => (out += b.toString('utf8')), 1 << 16);
  enc.write(r);
  enc.flush();
  return out.slice(0, -1);
}
