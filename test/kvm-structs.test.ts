/**
 * Every struct kvm-trace builds (src/kvm/abi/structs.ts) against the running kernel's BTF: the size of each
 * STRUCTS entry and the offset and size of every member, nested records included. A declaration that
 * drifts from the kernel fails here instead of corrupting a vCPU. Also: the kvm_run layout the vCPU loop
 * uses comes from BTF and equals the declared one.
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { Btf, type StructLayout } from '../src/btf/index.js';
import type { RecordType } from '../src/cdata/layout.js';
import { STRUCTS } from '../src/kvm/abi/structs.js';
import { kvmRunLayoutDeclared, kvmRunLayoutFromBtf } from '../src/kvm/kvm-run.js';

const VMLINUX = '/sys/kernel/btf/vmlinux';
const haveBtf = existsSync(VMLINUX);
if (!haveBtf) console.log(`kvm-structs.test: skipping: ${VMLINUX} missing (kernel built without BTF)`);

/** Kernel builds rename a few uapi members. */
const ALIASES: Record<string, string> = { immediate_exit: 'immediate_exit__unsafe' };
/**
 * Records declared with only the members kvm-trace uses: kvm_run's anonymous exit union (a few of the
 * kernel's exit structs) and its sync-regs union `s` (only the padding). Everywhere else, kvm_run's header
 * included, the member lists must be equal.
 */
const PARTIAL = new Set(['kvm_run.', 'kvm_run.s']);

interface Diff {
  path: string;
  ours: string;
  kernel: string;
}
interface Found {
  offset: number;
  size: number;
  nested?: StructLayout;
}

/**
 * Member `name` of a BTF record, looking through anonymous members as C does (the kernel's
 * __DECLARE_FLEX_ARRAY puts flexible arrays inside an anonymous struct).
 */
function findMember(k: StructLayout, name: string): Found | undefined {
  for (const m of k.members) if (m.name === name || m.name === ALIASES[name]) return m;
  for (const m of k.members) {
    if (m.name !== '' || !m.nested) continue;
    const inner = findMember(m.nested, name);
    if (inner) return { ...inner, offset: m.offset + inner.offset };
  }
  return undefined;
}

/** Member names in order; the kernel's flexible-array wrapper (anonymous { __empty_x; x[] }) counts as x. */
function names(members: Array<{ name: string; nested?: StructLayout }>): string[] {
  return members.map((m) => {
    const flex = m.name === '' && m.nested?.members.find((x) => x.name.startsWith('__empty_'));
    return flex ? flex.name.slice('__empty_'.length) : m.name;
  });
}

function compare(ours: RecordType, k: StructLayout, path: string, out: Diff[], counted: { members: number }): void {
  if (ours.size !== k.size) out.push({ path, ours: `size ${ours.size}`, kernel: `size ${k.size}` });
  const kernelNames = names(k.members).map((n) => Object.entries(ALIASES).find(([, v]) => v === n)?.[0] ?? n);
  const ourNames = ours.members.map((m) => m.name);
  if (!PARTIAL.has(path) && ourNames.join(',') !== kernelNames.join(',')) {
    out.push({ path, ours: ourNames.join(','), kernel: kernelNames.join(',') });
  }
  for (const m of ours.members) {
    const km = findMember(k, m.name);
    const mp = `${path}.${m.name}`;
    counted.members++;
    if (!km) {
      out.push({ path: mp, ours: 'declared', kernel: 'absent' });
      continue;
    }
    if (km.offset !== m.offset || km.size !== m.type.size) {
      out.push({ path: mp, ours: `@${m.offset}+${m.type.size}`, kernel: `@${km.offset}+${km.size}` });
    }
    if ((m.type.kind === 'struct' || m.type.kind === 'union') && km.nested) compare(m.type, km.nested, mp, out, counted);
  }
}

describe.skipIf(!haveBtf)('declared KVM structs vs the kernel BTF', () => {
  const btf = haveBtf ? Btf.vmlinux() : (null as unknown as Btf);

  it.each(Object.keys(STRUCTS))('struct %s: size and every member offset equal BTF', (tag) => {
    const k = btf.struct(tag);
    expect(k, `struct ${tag} is not in the kernel BTF`).toBeDefined();
    const diffs: Diff[] = [];
    const counted = { members: 0 };
    compare(STRUCTS[tag], k!, tag, diffs, counted);
    expect(diffs).toEqual([]);
    expect(counted.members).toBeGreaterThan(0);
  });

  it('a wrong declaration is caught (the comparison can fail)', () => {
    const bad: RecordType = { ...STRUCTS.kvm_regs, size: 136, members: STRUCTS.kvm_regs.members.slice(0, 17) };
    const diffs: Diff[] = [];
    compare(bad, btf.struct('kvm_regs')!, 'kvm_regs', diffs, { members: 0 });
    expect(diffs.map((d) => d.path)).toEqual(['kvm_regs', 'kvm_regs']);
  });

  it('kvm_run: the vCPU loop reads offsets from BTF, and they equal the declaration', () => {
    const fromBtf = kvmRunLayoutFromBtf(btf);
    expect(fromBtf?.source).toBe('btf');
    expect({ ...fromBtf, source: '' }).toEqual({ ...kvmRunLayoutDeclared(), source: '' });
    expect(fromBtf!.size).toBe(btf.struct('kvm_run')!.size);
  });
});
