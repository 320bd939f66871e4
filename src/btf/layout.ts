/**
 * Struct/union layouts computed from BTF: every member's byte offset, size, alignment and C type name,
 * with nested layouts for struct/union members (anonymous ones included, name ""). This is what the ABI
 * check, the kvm_run cache-line map and the buffer-alignment flags read instead of hard-coded offsets.
 */
import { BtfError, type BtfType } from './types.js';

/**
 * The parts of the BTF reader (class Btf, index.ts) a layout is computed from, declared here so this file
 * need not import the reader that imports it.
 */
export interface LayoutTypes {
  type(id: number): BtfType;
  resolve(id: number): BtfType;
  sizeOf(id: number): number;
  alignOf(id: number): number;
  typeName(id: number): string;
  layoutOf(id: number): StructLayout;
}

export interface StructLayout {
  /** C tag, "" for an anonymous record. */
  name: string;
  kind: 'struct' | 'union';
  id: number;
  size: number;
  align: number;
  members: MemberLayout[];
}

export type MemberKind = 'int' | 'struct' | 'union' | 'array' | 'ptr' | 'enum' | 'float' | 'other';

export interface MemberLayout {
  /** "" for an anonymous struct/union member. */
  name: string;
  /** Byte offset of the member (for a bitfield: of the byte holding its first bit). */
  offset: number;
  /** Bit offset from the start of the record. */
  bitOffset: number;
  /** Bitfield width; 0 unless the member is a bitfield. */
  bitSize: number;
  /** sizeof the member's type (for a bitfield: of its storage type). */
  size: number;
  align: number;
  typeId: number;
  /** C spelling, e.g. "__u64", "struct kvm_segment", "__u8[16]". */
  typeName: string;
  kind: MemberKind;
  elemCount?: number;
  elemSize?: number;
  nested?: StructLayout;
}

/**
 * An old-style (kind_flag 0) bitfield: BTF encodes it in the member's int type itself (BTF_INT_BITS /
 * BTF_INT_OFFSET), which then has fewer value bits than its size. `t` is the resolved member type.
 */
export function isIntBitfield(t: BtfType): t is BtfType & { kind: 'int' } {
  return t.kind === 'int' && (t.bits !== t.size * 8 || t.bitOffset !== 0);
}

function memberKind(t: BtfType): MemberKind {
  switch (t.kind) {
    case 'int': case 'struct': case 'union': case 'array': case 'ptr': case 'float':
      return t.kind;
    case 'enum': case 'enum64':
      return 'enum';
    default:
      return 'other';
  }
}

/** Layout of record type `id`; nested records come from btf.layoutOf, so each is computed once. */
export function structLayout(btf: LayoutTypes, id: number): StructLayout {
  const t = btf.type(id);
  if (t.kind !== 'struct' && t.kind !== 'union') throw new BtfError(`BTF type ${id} is a ${t.kind}, not a struct or union`);
  const members = t.members.map((m): MemberLayout => {
    const r = btf.resolve(m.type);
    let bitSize = m.bitfieldSize;
    let bitOffset = m.bitOffset;
    if (bitSize === 0 && isIntBitfield(r)) {
      bitSize = r.bits;
      bitOffset += r.bitOffset;
    }
    const ml: MemberLayout = {
      name: m.name,
      offset: Math.floor(bitOffset / 8),
      bitOffset,
      bitSize,
      size: btf.sizeOf(m.type),
      align: btf.alignOf(m.type),
      typeId: m.type,
      typeName: btf.typeName(m.type),
      kind: memberKind(r),
    };
    if (r.kind === 'array') {
      ml.elemCount = r.nelems;
      ml.elemSize = btf.sizeOf(r.type);
    }
    if (r.kind === 'struct' || r.kind === 'union') ml.nested = btf.layoutOf(r.id);
    return ml;
  });
  return { name: t.name, kind: t.kind, id, size: t.size, align: btf.alignOf(id), members };
}

/** Every leaf and record member as [dotted path, byte offset, size]; anonymous records add no path part. */
export function flattenLayout(l: StructLayout, prefix = '', base = 0): Array<{ path: string; offset: number; size: number; member: MemberLayout }> {
  const out: Array<{ path: string; offset: number; size: number; member: MemberLayout }> = [];
  for (const m of l.members) {
    const path = m.name === '' ? prefix : prefix ? `${prefix}.${m.name}` : m.name;
    if (m.name !== '') out.push({ path, offset: base + m.offset, size: m.size, member: m });
    if (m.nested) out.push(...flattenLayout(m.nested, path, base + m.offset));
  }
  return out;
}

/**
 * Member `name` of a layout, looking through anonymous struct/union members (the kernel's
 * __DECLARE_FLEX_ARRAY wraps flexible arrays in one), with its offset from the start of `layout`.
 */
export function findMember(layout: StructLayout, name: string, base = 0): { member: MemberLayout; offset: number } | undefined {
  for (const m of layout.members) {
    if (m.name === name) return { member: m, offset: base + m.offset };
  }
  for (const m of layout.members) {
    if (m.name === '' && m.nested) {
      const hit = findMember(m.nested, name, base + m.offset);
      if (hit) return hit;
    }
  }
  return undefined;
}
