/**
 * The small slices of other modules' APIs that the analysis code needs, declared structurally so the pure
 * analysis functions can be fed the real kernel BTF (src/btf, via btf-source.ts) or a test fixture alike.
 * These mirror `StructLayout` / `MemberLayout` from src/btf/index.ts and the ioctl table's entry shape.
 */

export interface MemberLayout {
  name: string;
  offset: number;
  bitOffset?: number;
  bitSize?: number;
  size: number;
  align: number;
  typeName: string;
  kind: 'int' | 'struct' | 'union' | 'array' | 'ptr' | 'enum' | 'float' | 'other';
  elemCount?: number;
  elemSize?: number;
  nested?: StructLayout;
}

export interface StructLayout {
  name: string;
  kind: 'struct' | 'union';
  id?: number;
  size: number;
  align: number;
  members: MemberLayout[];
}

/** Size and natural alignment of a type. */
export interface TypeSize {
  size: number;
  align: number;
}

/** Where the analysis gets kernel type layouts from: the running kernel's BTF in production. */
export interface TypeSource {
  /** struct or union by tag name ("kvm_regs"), typedefs followed. */
  struct(name: string): StructLayout | undefined;
  /** Any named type: a struct/union tag, a typedef ("__u64", "sigset_t") or a base type ("long unsigned int"). */
  type(name: string): TypeSize | undefined;
}

/** One row of the generated KVM ioctl table (src/kvm/abi/ioctl-table.ts). */
export interface IoctlInfo {
  name: string;
  cmd: number;
  dir: 'none' | 'write' | 'read' | 'readwrite' | number;
  nr: number;
  size: number;
  /** C spelling of the argument type, e.g. "struct kvm_regs", "__u64"; absent for _IO ioctls. */
  argType?: string | null;
  /** Tag of the argument struct, e.g. "kvm_regs", when the argument is a struct. */
  argStruct?: string | null;
  fdKinds?: readonly string[];
}

export type IoctlLookup = (name: string) => IoctlInfo | undefined;

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
