/**
 * The raw BTF wire format (Documentation/bpf/btf.rst): a header, a type section of variable-length records,
 * and a string section. vmlinux BTF holds ~100k+ records, so this module does one cheap pass that records
 * where each type starts, and decodes a record into a BtfType only when asked. Names are looked up by
 * searching the string section, so no name table is built unless many lookups ask for one.
 *
 * Split BTF (kernel modules) continues a base: its ids start after the base's last id and its string
 * offsets start after the base's string section.
 */
import {
  BTF_KIND_MAX, BTF_KIND_NAMES, BtfError, type BtfKindName, type BtfLinkage, type BtfMember, type BtfType,
} from './types.js';

const BTF_MAGIC = 0xeb9f;
/** The fields every version has: magic..str_len. Newer headers may be longer; hdr_len says how long. */
const MIN_HDR_LEN = 24;
const TYPE_HDR = 12;

export interface BtfHeader {
  version: number;
  flags: number;
  hdrLen: number;
  typeOff: number;
  typeLen: number;
  strOff: number;
  strLen: number;
  littleEndian: boolean;
}

export function parseHeader(bytes: Uint8Array): BtfHeader {
  if (bytes.length < MIN_HDR_LEN) throw new BtfError(`BTF too short for a header (${bytes.length} bytes)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let le = true;
  const m = dv.getUint16(0, true);
  if (m !== BTF_MAGIC) {
    if (dv.getUint16(0, false) !== BTF_MAGIC) throw new BtfError(`not BTF: magic 0x${m.toString(16)}, want 0xeb9f`);
    le = false;
  }
  const h: BtfHeader = {
    version: dv.getUint8(2),
    flags: dv.getUint8(3),
    hdrLen: dv.getUint32(4, le),
    typeOff: dv.getUint32(8, le),
    typeLen: dv.getUint32(12, le),
    strOff: dv.getUint32(16, le),
    strLen: dv.getUint32(20, le),
    littleEndian: le,
  };
  if (h.version !== 1) throw new BtfError(`unsupported BTF version ${h.version}`);
  if (h.hdrLen < MIN_HDR_LEN || h.hdrLen > bytes.length) throw new BtfError(`bad BTF header length ${h.hdrLen}`);
  const end = (off: number, len: number): number => h.hdrLen + off + len;
  if (end(h.typeOff, h.typeLen) > bytes.length || end(h.strOff, h.strLen) > bytes.length) {
    throw new BtfError(`BTF sections run past the end of the data (${bytes.length} bytes)`);
  }
  return h;
}

/** Bytes that follow the 12-byte common header of a record of this kind with this vlen. */
function extraBytes(kind: number, vlen: number): number {
  switch (kind) {
    case 1: return 4; // int: encoding word
    case 3: return 12; // array
    case 4: case 5: return vlen * 12; // struct/union members
    case 6: return vlen * 8; // enum values
    case 13: return vlen * 8; // func_proto params
    case 14: return 4; // var linkage
    case 15: return vlen * 12; // datasec var_secinfo
    case 17: return 4; // decl_tag component_idx
    case 19: return vlen * 12; // enum64 values
    default: return 0; // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag
  }
}

const LINKAGE: BtfLinkage[] = ['static', 'global', 'extern'];
const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;

export class RawBtf {
  readonly header: BtfHeader;
  /** Id of the first type in this BTF (1, or base count for split BTF). */
  readonly firstId: number;
  /** Absolute byte offset of each type record: offsets[id - firstId]. */
  readonly offsets: Uint32Array;
  private readonly dv: DataView;
  private readonly le: boolean;
  private readonly strStart: number;
  private strings: string | undefined;
  private readonly decoded: Array<BtfType | undefined>;

  constructor(readonly bytes: Uint8Array, readonly base?: RawBtf) {
    this.header = parseHeader(bytes);
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.le = this.header.littleEndian;
    this.strStart = this.header.hdrLen + this.header.strOff;
    this.firstId = base ? base.firstId + base.offsets.length : 1;
    this.offsets = this.indexTypes();
    this.decoded = new Array(this.offsets.length);
  }

  /** Total number of ids including void and any base types: valid ids are 0 .. count-1. */
  get count(): number {
    return this.firstId + this.offsets.length;
  }

  /** Length of the string section including the base's, for split-BTF string offsets. */
  get totalStrLen(): number {
    return (this.base?.totalStrLen ?? 0) + this.header.strLen;
  }

  private indexTypes(): Uint32Array {
    const { hdrLen, typeOff, typeLen } = this.header;
    const start = hdrLen + typeOff;
    const end = start + typeLen;
    let offs = new Uint32Array(Math.max(16, typeLen >>> 4));
    let n = 0;
    for (let p = start; p < end; ) {
      if (p + TYPE_HDR > end) throw new BtfError(`truncated BTF type record at byte ${p}`);
      const info = this.dv.getUint32(p + 4, this.le);
      const kind = (info >>> 24) & 0x1f;
      if (kind === 0 || kind > BTF_KIND_MAX) {
        throw new BtfError(
          `unknown BTF kind ${kind} at type id ${this.firstId + n} (this reader knows kinds 1..${BTF_KIND_MAX}; ` +
            'the BTF is newer than kvm-trace or corrupt)',
        );
      }
      if (n === offs.length) {
        const bigger = new Uint32Array(offs.length * 2);
        bigger.set(offs);
        offs = bigger;
      }
      offs[n++] = p;
      p += TYPE_HDR + extraBytes(kind, info & 0xffff);
      if (p > end) throw new BtfError(`BTF type id ${this.firstId + n - 1} runs past the type section`);
    }
    return offs.slice(0, n);
  }

  /** The string at `off` of the string section (split BTF: offsets past the base continue here). */
  str(off: number): string {
    if (off === 0) return '';
    if (this.base) {
      const baseLen = this.base.totalStrLen;
      if (off < baseLen) return this.base.str(off);
      off -= baseLen; // a split section need not start with "\0": its offset 0 is a real string
    }
    if (off >= this.header.strLen) throw new BtfError(`BTF string offset ${off} is past the string section`);
    const s = this.stringSection();
    const end = s.indexOf('\0', off);
    const raw = s.slice(off, end < 0 ? s.length : end);
    // Decoded as latin1 so byte offsets equal string indices; re-decode the rare non-ASCII name as UTF-8.
    return /[^\x00-\x7f]/.test(raw) ? Buffer.from(raw, 'latin1').toString('utf8') : raw;
  }

  stringSection(): string {
    this.strings ??= Buffer.from(this.bytes.buffer, this.bytes.byteOffset + this.strStart, this.header.strLen).toString('latin1');
    return this.strings;
  }

  /**
   * Ids of this BTF's own types named `name` (byte for byte, UTF-8), in id order. Looked up in a hash of
   * every type's name built on first use straight from the string bytes (FNV-1a, chained through two
   * Int32Arrays: ≈1.5 MB and ≈10 ms for vmlinux's 126 k types) — no JS string per name, unlike a Map of all
   * names (≈50 ms and tens of MB), and fast for the hundreds of lookups attach makes (one per ioctl type).
   */
  idsNamed(name: string): number[] {
    const out: number[] = [];
    if (name === '') {
      // The anonymous types (name_off 0): a scan, nobody looks them up by name in a hot path.
      for (let id = this.firstId; id < this.count; id++) if (this.nameOffOf(id) === 0) out.push(id);
      return out;
    }
    const idx = (this.nameHash ??= this.buildNameHash());
    const q = Buffer.from(name, 'utf8');
    let h = FNV_OFFSET;
    for (let i = 0; i < q.length; i++) h = Math.imul(h ^ q[i], FNV_PRIME);
    for (let i = idx.heads[h & idx.mask]; i >= 0; i = idx.next[i]) {
      const id = this.firstId + i;
      if (this.nameEquals(this.nameOffOf(id), q)) out.push(id);
    }
    return out;
  }

  private nameHash: { heads: Int32Array; next: Int32Array; mask: number } | undefined;

  private buildNameHash(): { heads: Int32Array; next: Int32Array; mask: number } {
    const n = this.offsets.length;
    const mask = (1 << Math.max(10, Math.ceil(Math.log2(n + 1)) + 1)) - 1;
    const heads = new Int32Array(mask + 1).fill(-1);
    const next = new Int32Array(n).fill(-1);
    // Descending ids, each pushed at its chain's head: every chain lists ids in ascending order.
    for (let i = n - 1; i >= 0; i--) {
      const off = this.nameOffOf(this.firstId + i);
      if (off === 0) continue;
      const { bytes, at } = this.strLocation(off);
      let h = FNV_OFFSET;
      for (let p = at; p < bytes.length && bytes[p] !== 0; p++) h = Math.imul(h ^ bytes[p], FNV_PRIME);
      next[i] = heads[h & mask];
      heads[h & mask] = i;
    }
    return { heads, next, mask };
  }

  /** Where string `off` lives: this BTF's string bytes or (split BTF) the base's. */
  private strLocation(off: number): { bytes: Uint8Array; at: number } {
    if (this.base) {
      const baseLen = this.base.totalStrLen;
      if (off < baseLen) return this.base.strLocation(off);
      off -= baseLen;
    }
    return { bytes: this.bytes, at: Math.min(this.strStart + off, this.strStart + this.header.strLen) };
  }

  /** Is the NUL-terminated string at `off` exactly the bytes `q`? */
  private nameEquals(off: number, q: Uint8Array): boolean {
    if (off === 0) return false;
    const { bytes, at } = this.strLocation(off);
    if (at + q.length >= bytes.length) return false;
    for (let i = 0; i < q.length; i++) if (bytes[at + i] !== q[i]) return false;
    return bytes[at + q.length] === 0;
  }

  /** name_off → name of a type id (ids of the base included). */
  nameOfId(id: number): string {
    if (id < this.firstId) return this.base ? this.base.nameOfId(id) : '';
    return this.str(this.nameOffOf(id));
  }

  /** Kind number of a type id of this BTF (no decoding). */
  kindOf(id: number): number {
    return (this.dv.getUint32(this.offsets[id - this.firstId] + 4, this.le) >>> 24) & 0x1f;
  }

  /** name_off of a type id of this BTF (no decoding). */
  nameOffOf(id: number): number {
    return this.dv.getUint32(this.offsets[id - this.firstId], this.le);
  }

  /** Decode type `id` (cached). Ids below firstId belong to the base. */
  type(id: number): BtfType {
    if (id === 0) return { id: 0, kind: 'void', name: 'void' };
    if (id < this.firstId) {
      if (!this.base) throw new BtfError(`BTF type id ${id} does not exist`);
      return this.base.type(id);
    }
    const i = id - this.firstId;
    if (i >= this.offsets.length || !Number.isInteger(i)) throw new BtfError(`BTF type id ${id} does not exist (max ${this.count - 1})`);
    return (this.decoded[i] ??= this.decode(id, this.offsets[i]));
  }

  private decode(id: number, p: number): BtfType {
    const dv = this.dv;
    const le = this.le;
    const name = this.str(dv.getUint32(p, le));
    const info = dv.getUint32(p + 4, le);
    const vlen = info & 0xffff;
    const kind = (info >>> 24) & 0x1f;
    const kflag = info >>> 31 === 1;
    const sizeOrType = dv.getUint32(p + 8, le);
    const x = p + TYPE_HDR;
    const k = BTF_KIND_NAMES[kind] as BtfKindName;
    switch (k) {
      case 'int': {
        const enc = dv.getUint32(x, le);
        const e = (enc >>> 24) & 0x0f;
        return { id, kind: 'int', name, size: sizeOrType, bits: enc & 0xff, bitOffset: (enc >>> 16) & 0xff,
          signed: (e & 1) !== 0, char: (e & 2) !== 0, bool: (e & 4) !== 0 };
      }
      case 'ptr':
        return { id, kind: 'ptr', name, type: sizeOrType };
      case 'array':
        return { id, kind: 'array', name, type: dv.getUint32(x, le), indexType: dv.getUint32(x + 4, le), nelems: dv.getUint32(x + 8, le) };
      case 'struct':
      case 'union': {
        const members: BtfMember[] = new Array(vlen);
        for (let i = 0; i < vlen; i++) {
          const q = x + i * 12;
          const off = dv.getUint32(q + 8, le);
          members[i] = {
            name: this.str(dv.getUint32(q, le)),
            type: dv.getUint32(q + 4, le),
            bitOffset: kflag ? off & 0xffffff : off,
            bitfieldSize: kflag ? off >>> 24 : 0,
          };
        }
        return { id, kind: k, name, size: sizeOrType, members };
      }
      case 'enum': {
        const values = [];
        for (let i = 0; i < vlen; i++) {
          const q = x + i * 8;
          values.push({ name: this.str(dv.getUint32(q, le)), value: kflag ? dv.getInt32(q + 4, le) : dv.getUint32(q + 4, le) });
        }
        return { id, kind: 'enum', name, size: sizeOrType, signed: kflag, values };
      }
      case 'enum64': {
        const values = [];
        for (let i = 0; i < vlen; i++) {
          const q = x + i * 12;
          const lo = BigInt(dv.getUint32(q + 4, le));
          const hi = BigInt(dv.getUint32(q + 8, le));
          const u = (hi << 32n) | lo;
          values.push({ name: this.str(dv.getUint32(q, le)), value: kflag ? BigInt.asIntN(64, u) : u });
        }
        return { id, kind: 'enum64', name, size: sizeOrType, signed: kflag, values };
      }
      case 'fwd':
        return { id, kind: 'fwd', name, fwdKind: kflag ? 'union' : 'struct' };
      case 'typedef':
      case 'volatile':
      case 'const':
      case 'restrict':
      case 'type_tag':
        return { id, kind: k, name, type: sizeOrType };
      case 'func':
        return { id, kind: 'func', name, type: sizeOrType, linkage: LINKAGE[vlen] ?? 'static' };
      case 'func_proto': {
        const params = [];
        for (let i = 0; i < vlen; i++) params.push({ name: this.str(dv.getUint32(x + i * 8, le)), type: dv.getUint32(x + i * 8 + 4, le) });
        return { id, kind: 'func_proto', name, returnType: sizeOrType, params };
      }
      case 'var':
        return { id, kind: 'var', name, type: sizeOrType, linkage: LINKAGE[dv.getUint32(x, le)] ?? 'static' };
      case 'datasec': {
        const vars = [];
        for (let i = 0; i < vlen; i++) {
          const q = x + i * 12;
          vars.push({ type: dv.getUint32(q, le), offset: dv.getUint32(q + 4, le), size: dv.getUint32(q + 8, le) });
        }
        return { id, kind: 'datasec', name, size: sizeOrType, vars };
      }
      case 'float':
        return { id, kind: 'float', name, size: sizeOrType };
      case 'decl_tag':
        return { id, kind: 'decl_tag', name, type: sizeOrType, componentIdx: dv.getInt32(x, le) };
      default:
        throw new BtfError(`unknown BTF kind ${kind} at type id ${id}`);
    }
  }
}
