/**
 * Which member of a struct counts the elements of one of its arrays: the one rule shared by the argument
 * decoder (src/decode/btf-args.ts caps an array by it) and the BPF loader (src/bpf/flex-arrays.ts tells the kernel
 * side where the count of a flexible array sits, so it can capture the entries).
 *
 * A count is a plain integer member of at most 4 bytes (no bitfield), looked up by name among the
 * struct's members, members of anonymous structs/unions included: for an array `x`, nr_x, then nx, then
 * num_x (kvm_xcrs.nr_xcrs, kvm_pmu_event_filter.nevents); for a flexible array, then the first of
 * FLEX_COUNT_NAMES that exists (kvm_msrs.nmsrs, kvm_cpuid2.nent, kvm_irq_routing.nr, kvm_signal_mask.len).
 */
import type { MemberLayout, StructLayout } from '../../btf/index.js';

/** Count members a flexible array honours, in order of preference. */
export const FLEX_COUNT_NAMES = ['nent', 'nmsrs', 'nr', 'n', 'len', 'count', 'nr_entries', 'num_entries', 'nents', 'ndata'];

/** Whether a member can be an element count: an integer of at most 4 bytes, not a bitfield. */
export function isCountCandidate(m: Pick<MemberLayout, 'kind' | 'bitSize' | 'size'>): boolean {
  return m.kind === 'int' && m.bitSize === 0 && m.size <= 4;
}

/** The count of array member `arrayName` among the candidates `counts` (keyed by member name), if any. */
export function countFor<T>(arrayName: string, flexible: boolean, counts: ReadonlyMap<string, T>): T | undefined {
  const named = counts.get(`nr_${arrayName}`) ?? counts.get(`n${arrayName}`) ?? counts.get(`num_${arrayName}`);
  if (named !== undefined || !flexible) return named;
  for (const n of FLEX_COUNT_NAMES) {
    const c = counts.get(n);
    if (c !== undefined) return c;
  }
  return undefined;
}

/** A struct's flexible array member and the member that counts its elements; offsets from the struct start. */
export interface FlexibleArray {
  /** Member name of the array ("entries", "indices", "sigset", "events"). */
  name: string;
  /** Offset of the first element: the bytes before it are the argument's header. */
  offset: number;
  elemSize: number;
  /** C type of one element, e.g. "struct kvm_msr_entry", "__u32". */
  elemType: string;
  count: { name: string; offset: number; size: number };
}

/**
 * The flexible array (`type x[]`, zero elements in BTF) among the members of `layout` — looking through
 * anonymous structs/unions, as the kernel's __DECLARE_FLEX_ARRAY wraps one — with its count by the rule
 * above. Undefined when there is none, its element size is unknown, or no member counts it.
 */
export function flexibleArrayOf(layout: StructLayout): FlexibleArray | undefined {
  const counts = new Map<string, { name: string; offset: number; size: number }>();
  let flex: { m: MemberLayout; offset: number } | undefined;
  const walk = (members: MemberLayout[], base: number): void => {
    for (const m of members) {
      if (m.name === '' && m.nested) walk(m.nested.members, base + m.offset);
      else if (isCountCandidate(m)) counts.set(m.name, { name: m.name, offset: base + m.offset, size: m.size });
      else if (m.kind === 'array' && m.elemCount === 0 && flex === undefined) flex = { m, offset: base + m.offset };
    }
  };
  walk(layout.members, 0);
  if (!flex || !flex.m.elemSize) return undefined;
  const count = countFor(flex.m.name, true, counts);
  if (!count) return undefined;
  return {
    name: flex.m.name,
    offset: flex.offset,
    elemSize: flex.m.elemSize,
    elemType: flex.m.typeName.replace(/\[\d*\]$/, ''),
    count,
  };
}
