/**
 * C struct layouts declared the way the uapi header declares them (member order and types), with offsets
 * computed by the x86_64 SysV rules rather than typed by hand. test/kvm-structs.test.ts proves every
 * computed size and offset equals the running kernel's BTF, so a wrong declaration cannot go unnoticed.
 *
 * Values: integers up to 32 bits are numbers, 64-bit integers are bigint, arrays are JS arrays (u8 arrays
 * are Uint8Array), structs/unions are plain objects. Unions decode every member over the same bytes.
 */

export type PrimName = 'u8' | 's8' | 'u16' | 's16' | 'u32' | 's32' | 'u64' | 's64';

export interface PrimType {
  kind: 'prim';
  name: PrimName;
  size: number;
  align: number;
}
export interface ArrayType {
  kind: 'array';
  elem: CType;
  length: number;
  size: number;
  align: number;
}
export interface Member {
  name: string;
  type: CType;
  offset: number;
}
export interface RecordType {
  kind: 'struct' | 'union';
  /** The C tag, e.g. "kvm_regs"; anonymous records have "". */
  name: string;
  members: Member[];
  size: number;
  align: number;
}
export type CType = PrimType | ArrayType | RecordType;

const prim = (name: PrimName, size: number): PrimType => ({ kind: 'prim', name, size, align: size });
export const u8 = prim('u8', 1);
export const s8 = prim('s8', 1);
export const u16 = prim('u16', 2);
export const s16 = prim('s16', 2);
export const u32 = prim('u32', 4);
export const s32 = prim('s32', 4);
export const u64 = prim('u64', 8);
export const s64 = prim('s64', 8);

export function array(elem: CType, length: number): ArrayType {
  return { kind: 'array', elem, length, size: elem.size * length, align: elem.align };
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/** A C struct: members laid out in order, each at its natural alignment; size rounded to the max. */
export function struct(name: string, members: Array<[string, CType]>, opts: { packed?: boolean } = {}): RecordType {
  let off = 0;
  let align = 1;
  const out: Member[] = [];
  for (const [mname, type] of members) {
    const a = opts.packed ? 1 : type.align;
    off = alignUp(off, a);
    out.push({ name: mname, type, offset: off });
    off += type.size;
    align = Math.max(align, a);
  }
  return { kind: 'struct', name, members: out, size: alignUp(off, align), align };
}

/** A C union: every member at offset 0; size is the largest member rounded to the max alignment. */
export function union(name: string, members: Array<[string, CType]>): RecordType {
  let size = 0;
  let align = 1;
  const out: Member[] = members.map(([mname, type]) => {
    size = Math.max(size, type.size);
    align = Math.max(align, type.align);
    return { name: mname, type, offset: 0 };
  });
  return { kind: 'union', name, members: out, size: alignUp(size, align), align };
}

/** Byte offset and type of a dotted member path ("cs.base", "u.io.port"). Throws on an unknown path. */
export function memberAt(type: RecordType, path: string): { offset: number; type: CType } {
  let t: CType = type;
  let off = 0;
  for (const part of path.split('.')) {
    if (t.kind !== 'struct' && t.kind !== 'union') throw new Error(`${path}: ${part} is not in a record`);
    const m: Member | undefined = t.members.find((x) => x.name === part);
    if (!m) throw new Error(`${type.name || 'record'} has no member ${path}`);
    off += m.offset;
    t = m.type;
  }
  return { offset: off, type: t };
}

export type CValue = number | bigint | Uint8Array | CValue[] | { [k: string]: CValue };

function readPrim(dv: DataView, off: number, p: PrimType): number | bigint {
  switch (p.name) {
    case 'u8': return dv.getUint8(off);
    case 's8': return dv.getInt8(off);
    case 'u16': return dv.getUint16(off, true);
    case 's16': return dv.getInt16(off, true);
    case 'u32': return dv.getUint32(off, true);
    case 's32': return dv.getInt32(off, true);
    case 'u64': return dv.getBigUint64(off, true);
    case 's64': return dv.getBigInt64(off, true);
  }
}

function writePrim(dv: DataView, off: number, p: PrimType, v: number | bigint): void {
  switch (p.name) {
    case 'u8': dv.setUint8(off, Number(v)); break;
    case 's8': dv.setInt8(off, Number(v)); break;
    case 'u16': dv.setUint16(off, Number(v), true); break;
    case 's16': dv.setInt16(off, Number(v), true); break;
    case 'u32': dv.setUint32(off, Number(v), true); break;
    case 's32': dv.setInt32(off, Number(v), true); break;
    case 'u64': dv.setBigUint64(off, BigInt.asUintN(64, BigInt(v)), true); break;
    case 's64': dv.setBigInt64(off, BigInt.asIntN(64, BigInt(v)), true); break;
  }
}

/** Decode a value of `type` at byte `off` of `dv`. */
export function decode(type: CType, dv: DataView, off = 0): CValue {
  switch (type.kind) {
    case 'prim':
      return readPrim(dv, off, type);
    case 'array':
      if (type.elem.kind === 'prim' && type.elem.name === 'u8') {
        return new Uint8Array(dv.buffer, dv.byteOffset + off, type.length).slice();
      }
      return Array.from({ length: type.length }, (_, i) => decode(type.elem, dv, off + i * type.elem.size));
    default: {
      const o: { [k: string]: CValue } = {};
      for (const m of type.members) o[m.name] = decode(m.type, dv, off + m.offset);
      return o;
    }
  }
}

/** Encode `value` (partial objects allowed: missing members are left as they are) at byte `off`. */
export function encode(type: CType, dv: DataView, value: CValue, off = 0): void {
  switch (type.kind) {
    case 'prim':
      writePrim(dv, off, type, value as number | bigint);
      return;
    case 'array': {
      const arr = value as ArrayLike<CValue>;
      for (let i = 0; i < Math.min(arr.length, type.length); i++) encode(type.elem, dv, arr[i], off + i * type.elem.size);
      return;
    }
    default: {
      const obj = value as { [k: string]: CValue };
      for (const m of type.members) if (obj[m.name] !== undefined) encode(m.type, dv, obj[m.name], off + m.offset);
    }
  }
}

/** Every leaf member as [dotted path, offset, size]: what the BTF comparison test walks. */
export function flatten(type: RecordType, prefix = '', base = 0): Array<{ path: string; offset: number; size: number }> {
  const out: Array<{ path: string; offset: number; size: number }> = [];
  for (const m of type.members) {
    const path = prefix ? `${prefix}.${m.name}` : m.name;
    out.push({ path, offset: base + m.offset, size: m.type.size });
    if (m.type.kind === 'struct' || m.type.kind === 'union') out.push(...flatten(m.type, path, base + m.offset));
  }
  return out;
}
