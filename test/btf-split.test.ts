/**
 * Split BTF for real, on this machine: pahole (the tool that makes kernel module BTF) encodes a small C
 * object's types as split BTF over this kernel's /sys/kernel/btf/vmlinux, as it does for kvm.ko on
 * distribution kernels. kvm-trace's kernel entry point (kernelBtf, vmlinux + a module's BTF) must read it
 * as bpftool does: the module's ids continue after vmlinux's, its strings after vmlinux's string section,
 * and its members point at deduplicated vmlinux types. (The kernel matrix checks the same against the real
 * /sys/kernel/btf/kvm of Debian's 6.1 and 6.12 inside QEMU: test/kernels.test.ts.)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Btf } from '../src/btf/index.js';
import { elfSection } from '../src/btf/elf.js';
import { kernelBtf, missingKernelType, VMLINUX_BTF } from '../src/btf/kernel.js';

const C_SOURCE = `
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
struct list_head { struct list_head *next, *prev; };
enum kt_split_kind { KT_SPLIT_A = 1, KT_SPLIT_B = 7 };
struct kt_split_probe {
  __u8 tag;
  __u64 value;
  struct list_head *lh;
  __u16 arr[3];
  union { __u32 word; __u8 bytes[4]; };
  enum kt_split_kind kind;
  unsigned int low : 3, high : 5;
  __u32 count;
  __u8 entries[];
};
struct kt_split_probe kt_split_probe_instance;
`;

function skipReason(): string | undefined {
  try {
    accessSync(VMLINUX_BTF, constants.R_OK);
  } catch {
    return `no ${VMLINUX_BTF}`;
  }
  for (const [tool, pkg] of [['gcc', 'gcc'], ['pahole', 'dwarves'], ['bpftool', 'bpftool']]) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `no ${tool} (Debian package ${pkg}; npm test's bootstrap installs it)`;
  }
  return undefined;
}

const skip = skipReason();
if (skip) console.log(`split BTF tests skipped: ${skip}`);

interface BpftoolType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  members?: Array<{ name: string; type_id: number; bits_offset: number; bitfield_size?: number }>;
}

describe.skipIf(skip !== undefined)('split BTF made by pahole over this kernel\'s vmlinux', () => {
  let dir: string;
  let moduleBtf: string;
  let theirs: BpftoolType[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kt-split-'));
    writeFileSync(join(dir, 'm.c'), C_SOURCE);
    execFileSync('gcc', ['-g', '-c', join(dir, 'm.c'), '-o', join(dir, 'm.o')]);
    // pahole prints warnings about this kernel's BTF yet encodes correctly (HOST.md).
    execFileSync('pahole', ['-J', '--btf_base', VMLINUX_BTF, join(dir, 'm.o')], { stdio: 'ignore' });
    const sec = elfSection(readFileSync(join(dir, 'm.o')), '.BTF', 'm.o');
    if (!sec) throw new Error('pahole wrote no .BTF section');
    moduleBtf = join(dir, 'm.btf');
    writeFileSync(moduleBtf, sec);
    const json = execFileSync('bpftool', ['-j', '-B', VMLINUX_BTF, 'btf', 'dump', 'file', moduleBtf], { encoding: 'utf8' });
    theirs = (JSON.parse(json) as { types: BpftoolType[] }).types;
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is really split: its first id follows vmlinux\'s last', () => {
    const base = Btf.vmlinux();
    expect(theirs.length).toBeGreaterThan(0);
    expect(Math.min(...theirs.map((t) => t.id))).toBe(base.count);
  });

  it('kernelBtf() reads every struct/union/enum of it with bpftool\'s ids, sizes and member offsets', () => {
    const btf = kernelBtf({ kvm: moduleBtf });
    expect(btf.source).toBe(`${VMLINUX_BTF} + ${moduleBtf}`);
    expect(btf.count).toBe(Btf.vmlinux().count + theirs.length);
    const named = theirs.filter((t) => t.name !== '(anon)' && ['STRUCT', 'UNION', 'ENUM'].includes(t.kind));
    expect(named.map((t) => t.name).sort()).toEqual(['kt_split_kind', 'kt_split_probe']);
    for (const t of theirs) {
      const ours = btf.type(t.id);
      expect(ours.kind.toUpperCase(), `id ${t.id}`).toBe(t.kind);
      expect(ours.name || '(anon)').toBe(t.name);
      if (ours.kind === 'struct' || ours.kind === 'union') {
        expect(ours.size).toBe(t.size);
        expect(ours.members.map((m) => [m.name || '(anon)', m.type, m.bitOffset, m.bitfieldSize])).toEqual(
          (t.members ?? []).map((m) => [m.name, m.type_id, m.bits_offset, m.bitfield_size ?? 0]),
        );
      }
    }
  });

  it('lays the struct out across both: member types from vmlinux, names from either string section', () => {
    const l = kernelBtf({ kvm: moduleBtf }).struct('kt_split_probe')!;
    const ids = new Set(theirs.map((t) => t.id));
    expect(ids.has(l.id)).toBe(true);
    expect(l.size).toBe(48);
    expect(l.align).toBe(8);
    expect(l.members.map((m) => [m.name, m.offset, m.size, m.typeName])).toEqual([
      ['tag', 0, 1, '__u8'],
      ['value', 8, 8, '__u64'],
      ['lh', 16, 8, 'struct list_head *'],
      ['arr', 24, 6, '__u16[3]'],
      ['', 32, 4, expect.stringMatching(/^union /)],
      ['kind', 36, 4, 'enum kt_split_kind'],
      ['low', 40, 4, 'unsigned int'],
      ['high', 40, 4, 'unsigned int'],
      ['count', 44, 4, '__u32'],
      ['entries', 48, 0, '__u8[0]'],
    ]);
    // list_head was deduplicated into vmlinux: the split view finds vmlinux's, no copy of its own.
    const lh = kernelBtf({ kvm: moduleBtf }).findAllByName('list_head', 'struct');
    expect(lh).toEqual(Btf.vmlinux().findAllByName('list_head', 'struct'));
    expect(lh.every((id) => id < Btf.vmlinux().count)).toBe(true);
  });

  it('without a module BTF file the kernel types are vmlinux\'s alone, and a missing type says where it looked', () => {
    expect(kernelBtf({ kvm: join(dir, 'absent') })).toBe(Btf.vmlinux());
    expect(missingKernelType('struct kvm_regs', join(dir, 'absent'))).toBe(
      `struct kvm_regs is not in ${VMLINUX_BTF}, and there is no ${join(dir, 'absent')} (KVM not loaded, or a kernel without module BTF: modprobe kvm-intel or kvm-amd)`,
    );
    expect(missingKernelType('struct kvm_regs', moduleBtf)).toBe(`struct kvm_regs is in neither ${VMLINUX_BTF} nor ${moduleBtf}`);
  });
});
