/**
 * What a copy rule (copy-rules.ts) works with: the call as decoded, its argument pointer, the kernel's types,
 * and the list of copies the rule builds through small verbs — the whole argument, a header, the entries of
 * a flexible array, one member, a buffer elsewhere — each sized and aligned from BTF, or recorded as a copy
 * of unknown length with the reason.
 */
import type { StructLayout } from '../../btf/layout.js';
import { findMember } from '../../btf/layout.js';
import type { TypeSource } from '../../btf/type-source.js';
import { fieldNumber } from '../../cdata/values.js';
import type { IoctlDef } from './ioctl-table.js';

export type CopyDir = 'from_user' | 'to_user';

/**
 * The kernel routine a handler copies through. It decides which copy hook can see the copy: a hook on
 * `_copy_from_user` sees copy_from_user and the memdup family (they copy through it), one on memdup_user
 * or vmemdup_user only that function's copies, one on `_copy_to_user` copy_to_user; get_user / put_user are
 * inlined single moves no hook sees.
 */
export type CopyRoutine = 'copy_from_user' | 'copy_to_user' | 'memdup_user' | 'vmemdup_user' | 'get_user' | 'put_user';

/** For each hooked kernel function (a copy hook's name), the routines whose copies it observes. */
export const ROUTINES_SEEN_BY: Readonly<Record<string, readonly CopyRoutine[]>> = {
  _copy_from_user: ['copy_from_user', 'memdup_user', 'vmemdup_user'],
  _copy_to_user: ['copy_to_user'],
  memdup_user: ['memdup_user'],
  vmemdup_user: ['vmemdup_user'],
};

/** The routines the attached hooks (kernel function names) observe. */
export function routinesSeen(hooks: Iterable<string>): Set<CopyRoutine> {
  const out = new Set<CopyRoutine>();
  // Own keys only: a hook name read from a file may be "__proto__" or "constructor".
  for (const h of hooks) if (Object.hasOwn(ROUTINES_SEEN_BY, h)) for (const r of ROUTINES_SEEN_BY[h]) out.add(r);
  return out;
}

/** The plain copy routine of a direction, the default of every rule verb. */
export const plainCopy = (dir: CopyDir): CopyRoutine => (dir === 'from_user' ? 'copy_from_user' : 'copy_to_user');

export interface DerivedCopy {
  /** "arg", or the nested buffer, e.g. "kvm_msrs.entries", "kvm_signal_mask.sigset", "kvm_dirty_log.dirty_bitmap". */
  what: string;
  dir: CopyDir;
  addr: bigint;
  /** Bytes copied; null when the length cannot be derived from the capture (see `unknown`). */
  len: number | null;
  /** Natural alignment of the buffer's type, from BTF (1 when the type is not known). */
  align: number;
  /** C type of the buffer, e.g. "struct kvm_regs", "struct kvm_msr_entry[3]". */
  type: string;
  /** The routine the handler copies it through. */
  via: CopyRoutine;
  /**
   * The handler makes this copy in this many consecutive pieces whose boundaries the capture does not reveal
   * (KVM_GET_MSR_INDEX_LIST writes msrs_to_save, then emulated_msrs); absent: one copy.
   */
  pieces?: number;
  /** Why `len` is null. */
  unknown?: string;
  /** A condition the derived length rests on. */
  assumes?: string;
}

/** What the rules know about the memory slots of each VM, for the dirty-log bitmap length. */
export interface SlotSizes {
  /** Pages in memory slot `slot` (as_id << 16 | id) of this VM, if a KVM_SET_USER_MEMORY_REGION was seen. */
  slotPages(pid: number, vm: number | null, slot: number): number | undefined;
}

/** The parts of an IoctlRecord the rules read. */
export interface IoctlCall {
  name: string;
  pid: number;
  vm: number | null;
  fd_kind: string;
  dir: string;
  size: number;
  arg: string;
  ret: number;
  args?: Record<string, unknown>;
}

export interface RuleEnv {
  types: TypeSource;
  /** The ioctl table entry for the call's name (argument type), when known. */
  ioctl?: Pick<IoctlDef, 'argStruct' | 'argType'>;
  slots?: SlotSizes;
  pageSize?: number;
}

const stripStruct = (t: string): string => t.replace(/^(struct|union)\s+/, '').trim();

export class RuleCtx {
  readonly copies: DerivedCopy[] = [];
  constructor(
    readonly call: IoctlCall,
    readonly arg: bigint,
    readonly env: RuleEnv,
  ) {}

  get args(): Record<string, unknown> {
    return this.call.args ?? {};
  }

  num(field: string): number | undefined {
    return fieldNumber(this.args[field]);
  }

  struct(name: string): StructLayout | undefined {
    return this.env.types.struct(name);
  }

  /** The argument's own type: the table's argStruct/argType, sized and aligned by BTF. */
  argType(): { type: string; size: number; align: number } {
    const t = this.env.ioctl;
    if (t?.argStruct) {
      const s = this.struct(t.argStruct);
      if (s) return { type: `struct ${t.argStruct}`, size: s.size, align: s.align };
    }
    if (t?.argType) {
      const s = this.env.types.type(t.argType) ?? this.env.types.type(stripStruct(t.argType));
      if (s) return { type: t.argType, size: s.size, align: s.align };
    }
    // No kernel type known: the encoded size is still what the kernel copied (a different size would be a
    // different number and fail with ENOTTY), but its alignment is unknown.
    return { type: t?.argType ?? `${this.call.size} bytes`, size: this.call.size, align: 1 };
  }

  /** The whole fixed-size argument at `arg`. */
  whole(dir: CopyDir, via: CopyRoutine = plainCopy(dir)): void {
    const a = this.argType();
    if (a.size > 0) this.push({ what: 'arg', dir, addr: this.arg, len: a.size, align: a.align, type: a.type, via });
  }

  /** sizeof(struct `name`) at `arg`: the header of a variable-length argument. */
  header(name: string, dir: CopyDir, via: CopyRoutine = plainCopy(dir)): void {
    const s = this.struct(name);
    if (s) this.push({ what: 'arg', dir, addr: this.arg, len: s.size, align: s.align, type: `struct ${name}`, via });
    else this.unknown('arg', dir, this.arg, `struct ${name}`, `struct ${name} is not in the kernel BTF`, via);
  }

  /**
   * `count` elements of the flexible array member `member` of struct `name`, at arg + offsetof(member).
   * The alignment is the member's own (its element type's, from BTF).
   */
  flex(name: string, member: string, count: number | undefined, dir: CopyDir, via: CopyRoutine = plainCopy(dir), pieces?: number): void {
    const what = `${name}.${member}`;
    const s = this.struct(name);
    const hit = s && findMember(s, member);
    if (!hit) {
      this.unknown(what, dir, this.arg, `${name}.${member}`, `${name}.${member} is not in the kernel BTF`, via);
      return;
    }
    const m = hit.member;
    const elemType = m.typeName.replace(/\[\d*\]$/, '');
    const elem = this.elemSize(m.elemSize, elemType);
    const addr = this.arg + BigInt(hit.offset);
    if (count === undefined) {
      this.unknown(what, dir, addr, `${elemType}[]`, `the element count was not captured`, via);
      return;
    }
    if (count <= 0 || elem === undefined) {
      if (elem === undefined) this.unknown(what, dir, addr, `${elemType}[${count}]`, `size of ${elemType} unknown`, via);
      return;
    }
    this.push({ what, dir, addr, len: count * elem.size, align: elem.align || m.align, type: `${elemType}[${count}]`, via, ...(pieces && pieces > 1 ? { pieces } : {}) });
  }

  private elemSize(btfSize: number | undefined, elemType: string): { size: number; align: number } | undefined {
    const t = this.env.types.type(stripStruct(elemType)) ?? this.env.types.type(elemType);
    if (t) return t;
    return btfSize ? { size: btfSize, align: 1 } : undefined;
  }

  /** One member of struct `name` at arg + offsetof(member): get_user/put_user of a single field. */
  member(name: string, member: string, dir: CopyDir): void {
    const via: CopyRoutine = dir === 'from_user' ? 'get_user' : 'put_user';
    const s = this.struct(name);
    const hit = s && findMember(s, member);
    if (!hit) {
      this.unknown(`${name}.${member}`, dir, this.arg, `${name}.${member}`, `${name}.${member} is not in the kernel BTF`, via);
      return;
    }
    const m = hit.member;
    this.push({ what: `${name}.${member}`, dir, addr: this.arg + BigInt(hit.offset), len: m.size, align: m.align, type: m.typeName, via });
  }

  /** A buffer elsewhere in memory (a pointer field) of a named type. */
  at(what: string, dir: CopyDir, addr: bigint | undefined, typeName: string, len?: number, via: CopyRoutine = plainCopy(dir)): void {
    if (addr === undefined) {
      this.unknown(what, dir, 0n, typeName, `${what} was not captured`, via);
      return;
    }
    const t = this.env.types.type(stripStruct(typeName)) ?? this.env.types.type(typeName);
    if (!t) {
      this.unknown(what, dir, addr, typeName, `${typeName} is not in the kernel BTF`, via);
      return;
    }
    const n = len ?? t.size;
    if (n > 0) this.push({ what, dir, addr, len: n, align: t.align, type: typeName, via });
  }

  unknown(what: string, dir: CopyDir, addr: bigint, type: string, why: string, via: CopyRoutine = plainCopy(dir)): void {
    this.copies.push({ what, dir, addr, len: null, align: this.env.types.type(stripStruct(type))?.align ?? 1, type, via, unknown: why });
  }

  push(c: DerivedCopy): void {
    this.copies.push(c);
  }
}

