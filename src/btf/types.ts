/**
 * BTF type records as plain typed objects, one interface per kind (include/uapi/linux/btf.h). Type ids
 * refer to other types by number; id 0 is void. Shaped loosely after cilium/ebpf's btf package, but as
 * data rather than a graph so a type can be decoded on demand from the raw bytes.
 */

/** Kind numbers as the kernel defines them (BTF_KIND_*); index = number. */
export const BTF_KIND_NAMES = [
  'void', 'int', 'ptr', 'array', 'struct', 'union', 'enum', 'fwd', 'typedef', 'volatile', 'const', 'restrict',
  'func', 'func_proto', 'var', 'datasec', 'float', 'decl_tag', 'type_tag', 'enum64',
] as const;

export type BtfKindName = (typeof BTF_KIND_NAMES)[number];

/** Highest kind this reader understands (BTF_KIND_ENUM64). */
export const BTF_KIND_MAX = BTF_KIND_NAMES.length - 1;

interface Base {
  id: number;
  /** "" for anonymous types. */
  name: string;
}

export interface BtfVoid extends Base { kind: 'void' }
export interface BtfInt extends Base {
  kind: 'int';
  size: number;
  /** Value bits and their offset inside `size` bytes (BTF_INT_BITS / BTF_INT_OFFSET). */
  bits: number;
  bitOffset: number;
  signed: boolean;
  char: boolean;
  bool: boolean;
}
export interface BtfPtr extends Base { kind: 'ptr'; type: number }
export interface BtfArray extends Base { kind: 'array'; type: number; indexType: number; nelems: number }
export interface BtfMember {
  name: string;
  type: number;
  /** Offset of the member's first bit from the start of the record. */
  bitOffset: number;
  /** Bitfield width from kind_flag encoding; 0 otherwise (old-style int bitfields: see layout.ts). */
  bitfieldSize: number;
}
export interface BtfRecord extends Base { kind: 'struct' | 'union'; size: number; members: BtfMember[] }
export interface BtfEnumValue { name: string; value: number }
export interface BtfEnum extends Base { kind: 'enum'; size: number; signed: boolean; values: BtfEnumValue[] }
export interface BtfEnum64Value { name: string; value: bigint }
export interface BtfEnum64 extends Base { kind: 'enum64'; size: number; signed: boolean; values: BtfEnum64Value[] }
export interface BtfFwd extends Base { kind: 'fwd'; fwdKind: 'struct' | 'union' }
export interface BtfModifier extends Base { kind: 'typedef' | 'volatile' | 'const' | 'restrict' | 'type_tag'; type: number }
export type BtfLinkage = 'static' | 'global' | 'extern';
export interface BtfFunc extends Base { kind: 'func'; type: number; linkage: BtfLinkage }
export interface BtfParam { name: string; type: number }
export interface BtfFuncProto extends Base { kind: 'func_proto'; returnType: number; params: BtfParam[] }
export interface BtfVar extends Base { kind: 'var'; type: number; linkage: BtfLinkage }
export interface BtfVarSecinfo { type: number; offset: number; size: number }
export interface BtfDatasec extends Base { kind: 'datasec'; size: number; vars: BtfVarSecinfo[] }
export interface BtfFloat extends Base { kind: 'float'; size: number }
/** A tag on a type (componentIdx -1) or on one member/parameter of it. */
export interface BtfDeclTag extends Base { kind: 'decl_tag'; type: number; componentIdx: number }

export type BtfType =
  | BtfVoid | BtfInt | BtfPtr | BtfArray | BtfRecord | BtfEnum | BtfEnum64 | BtfFwd | BtfModifier
  | BtfFunc | BtfFuncProto | BtfVar | BtfDatasec | BtfFloat | BtfDeclTag;

/** Errors about malformed or unsupported BTF, and lookups of things BTF does not describe. */
export class BtfError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BtfError';
  }
}
