/**
 * The BTF reader against independent truths: the C compiler's sizeof/offsetof/_Alignof over the uapi
 * headers, bit positions the compiler gives bitfields, the facts HOST.md measured for kvm_run, and
 * bpftool's own dump of every type in vmlinux. Skips (with a printed reason) only where the machine has no
 * kernel BTF, no cc, or no bpftool.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Btf, type BtfType, type StructLayout } from '../src/btf/index.js';

const VMLINUX = '/sys/kernel/btf/vmlinux';
const haveBtf = existsSync(VMLINUX);
const have = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const haveCc = have('cc');
const haveBpftool = have('bpftool');
if (!haveBtf) console.log(`btf.test: skipping kernel BTF tests: ${VMLINUX} does not exist (CONFIG_DEBUG_INFO_BTF off)`);
if (!haveCc) console.log('btf.test: skipping compiler cross-checks: no cc');
if (!haveBpftool) console.log('btf.test: skipping the bpftool cross-check: bpftool is not installed (apt-get install bpftool)');

/** Compile and run a C program; returns its stdout lines as [key, number] pairs. */
function runC(body: string, includes: string[]): Map<string, number> {
  const dir = mkdtempSync(join(tmpdir(), 'btf-test-'));
  try {
    const src = [
      '#include <stdio.h>', '#include <stddef.h>', '#include <string.h>',
      ...includes.map((h) => `#include <${h}>`),
      'int main(void) {', body, 'return 0; }',
    ].join('\n');
    writeFileSync(join(dir, 'p.c'), src);
    execFileSync('cc', ['-o', join(dir, 'p'), join(dir, 'p.c')], { stdio: ['ignore', 'ignore', 'pipe'] });
    const out = execFileSync(join(dir, 'p'), { encoding: 'utf8' });
    return new Map(out.trim().split('\n').map((l) => {
      const [k, v] = l.split(' ');
      return [k, Number(v)];
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function member(l: StructLayout, path: string): { offset: number; size: number } {
  let layout: StructLayout | undefined = l;
  let offset = 0;
  let size = 0;
  for (const part of path.split('.')) {
    const find = (x: StructLayout): { m: StructLayout['members'][number]; off: number } | undefined => {
      for (const m of x.members) {
        if (m.name === part) return { m, off: m.offset };
        if (m.name === '' && m.nested) {
          const inner = find(m.nested);
          if (inner) return { m: inner.m, off: m.offset + inner.off };
        }
      }
      return undefined;
    };
    const hit = layout && find(layout);
    if (!hit) throw new Error(`no member ${path} in ${l.name}`);
    offset += hit.off;
    size = hit.m.size;
    layout = hit.m.nested;
  }
  return { offset, size };
}

type BpftoolType = Record<string, unknown> & { id: number; kind: string; name: string };

/** The same facts of one type, from our reader and from bpftool's JSON, as two comparable arrays. */
function comparable(t: BtfType, d: BpftoolType): [unknown[], unknown[]] {
  const ours: unknown[] = [t.kind.toUpperCase(), t.name === '' ? '(anon)' : t.name];
  const theirs: unknown[] = [d.kind, d.name];
  if ('size' in d && t.kind !== 'datasec') {
    ours.push((t as { size: number }).size);
    theirs.push(d.size);
  }
  if ('type_id' in d) {
    ours.push((t as { type: number }).type);
    theirs.push(d.type_id);
  }
  const add = (o: unknown, b: unknown): void => {
    ours.push(o);
    theirs.push(b);
  };
  switch (t.kind) {
    case 'int':
      add([t.bits, t.bitOffset], [d.nr_bits, d.bits_offset]);
      break;
    case 'array':
      add([t.indexType, t.nelems], [d.index_type_id, d.nr_elems]);
      break;
    case 'struct': case 'union': {
      const ms = d.members as Array<{ name: string; type_id: number; bits_offset: number; bitfield_size?: number }>;
      add(t.members.map((m) => [m.name || '(anon)', m.type, m.bitOffset, m.bitfieldSize]),
        ms.map((m) => [m.name, m.type_id, m.bits_offset, m.bitfield_size ?? 0]));
      break;
    }
    case 'enum': {
      // bpftool 7.1's JSON sign-extends 32-bit values to 64 bits (its plain dump does not), so compare
      // our value in that same spelling when bpftool printed one above 2^32.
      const vs = d.values as Array<{ name: string; val: number }>;
      const asBpftool = (v: number, printed: number): number =>
        printed >= 2 ** 32 ? Number(BigInt.asUintN(64, BigInt.asIntN(32, BigInt(v)))) : v;
      add(t.values.map((v, i) => [v.name, asBpftool(v.value, vs[i]?.val ?? 0)]), vs.map((v) => [v.name, v.val]));
      break;
    }
    case 'enum64': {
      // bpftool prints 64-bit values as JSON numbers, so compare at double precision.
      const vs = d.values as Array<{ name: string; val: number }>;
      add(t.values.map((v) => [v.name, Number(v.value)]), vs.map((v) => [v.name, v.val]));
      break;
    }
    case 'fwd':
      add(t.fwdKind, d.fwd_kind);
      break;
    case 'func': case 'var':
      add(t.linkage, d.linkage);
      break;
    case 'func_proto': {
      const ps = d.params as Array<{ name: string; type_id: number }>;
      add([t.returnType, t.params.map((p) => [p.name || '(anon)', p.type])], [d.ret_type_id, ps.map((p) => [p.name, p.type_id])]);
      break;
    }
    case 'datasec': {
      const vs = d.vars as Array<{ type_id: number; offset: number; size: number }>;
      add(t.vars.map((v) => [v.type, v.offset, v.size]), vs.map((v) => [v.type_id, v.offset, v.size]));
      break;
    }
    case 'decl_tag':
      add(t.componentIdx, d.component_idx);
      break;
    default:
      break;
  }
  return [ours, theirs];
}

describe.skipIf(!haveBtf)('vmlinux BTF', () => {
  it('opens vmlinux BTF quickly enough to do per command (timing printed, not asserted)', () => {
    const t0 = performance.now();
    const btf = Btf.vmlinux(VMLINUX);
    const t1 = performance.now();
    btf.struct('kvm_run');
    const t2 = performance.now();
    console.log(`btf.test: Btf.vmlinux() ${(t1 - t0).toFixed(1)} ms for ${btf.count} types; struct('kvm_run') ${(t2 - t1).toFixed(1)} ms`);
    expect(btf.count).toBeGreaterThan(1000);
    expect(Btf.vmlinux(VMLINUX)).toBe(btf); // cached per path
  });

  // HOST.md: "Header fields 0..31, exit union at 32 (256 bytes; io at 32..47, mmio at 32..55, hypercall
  // 32..103), kvm_valid_regs 288, kvm_dirty_regs 296, sync regs `s` at 304 (2048)".
  it.each([
    ['request_interrupt_window', 0, 1],
    ['exit_reason', 8, 4],
    ['cr8', 16, 8],
    ['apic_base', 24, 8],
    ['io', 32, 16],
    ['mmio', 32, 24],
    ['hypercall', 32, 72],
    ['kvm_valid_regs', 288, 8],
    ['kvm_dirty_regs', 296, 8],
    ['s', 304, 2048],
    ['io.port', 34, 2],
    ['mmio.phys_addr', 32, 8],
  ])('kvm_run.%s is at %i, %i bytes', (path, offset, size) => {
    const run = Btf.vmlinux(VMLINUX).struct('kvm_run')!;
    expect(run.size).toBe(2352);
    expect(member(run, path)).toEqual({ offset, size });
  });

  it('keeps the anonymous exit union as a member named "" with a nested layout', () => {
    const run = Btf.vmlinux(VMLINUX).struct('kvm_run')!;
    const anon = run.members.find((m) => m.name === '' && m.offset === 32)!;
    expect(anon.kind).toBe('union');
    expect(anon.size).toBe(256);
    expect(anon.nested?.kind).toBe('union');
    expect(anon.nested?.name).toBe('');
    expect(anon.nested?.members.map((m) => m.name)).toEqual(expect.arrayContaining(['hw', 'io', 'mmio', 'hypercall', 'internal']));
    expect(anon.nested?.members.every((m) => m.offset === 0)).toBe(true);
    expect(anon.typeName).toBe('union <anon>');
  });

  it.each([
    ['kvm_run', 'padding1', '__u8[6]', 'array'],
    ['kvm_run', 'exit_reason', '__u32', 'int'],
    ['kvm_sregs', 'cs', 'struct kvm_segment', 'struct'],
    ['kvm_sregs', 'interrupt_bitmap', '__u64[4]', 'array'],
    ['kvm_regs', 'rip', '__u64', 'int'],
  ])('%s.%s is spelled %s (%s)', (s, name, typeName, kind) => {
    const m = Btf.vmlinux(VMLINUX).struct(s)!.members.find((x) => x.name === name)!;
    expect(m.typeName).toBe(typeName);
    expect(m.kind).toBe(kind);
  });

  it('gives arrays their element count and size', () => {
    const m = Btf.vmlinux(VMLINUX).struct('kvm_sregs')!.members.find((x) => x.name === 'interrupt_bitmap')!;
    expect([m.elemCount, m.elemSize, m.size, m.align]).toEqual([4, 8, 32, 8]);
  });

  it('follows typedefs and struct/union prefixes in struct()', () => {
    const btf = Btf.vmlinux(VMLINUX);
    expect(btf.struct('struct kvm_regs')?.id).toBe(btf.struct('kvm_regs')?.id);
    expect(btf.struct('union kvm_regs')).toBeUndefined();
    expect(btf.struct('no_such_struct_kvm_trace')).toBeUndefined();
    // atomic_t is a typedef of an anonymous struct { int counter; }
    expect(btf.struct('atomic_t')?.members.map((m) => m.name)).toEqual(['counter']);
    expect(btf.resolve(btf.findByName('__u64', 'typedef')!.id).kind).toBe('int');
  });

  describe.skipIf(!haveCc)('layouts equal what cc computes from the uapi header', () => {
    it.each(['kvm_run', 'kvm_regs', 'kvm_sregs', 'kvm_segment', 'kvm_dtable', 'kvm_userspace_memory_region', 'kvm_fpu', 'kvm_msrs', 'kvm_cpuid2', 'kvm_irq_level'])(
      'struct %s: size, alignment and every named member offset',
      (name) => {
        const l = Btf.vmlinux(VMLINUX).struct(name)!;
        expect(l, `${name} in BTF`).toBeDefined();
        // Kernel builds rename kvm_run's immediate_exit to immediate_exit__unsafe (HOST.md); uapi keeps the old name.
        const uapiName = (m: string): string => (m === 'immediate_exit__unsafe' ? 'immediate_exit' : m);
        const named = l.members.filter((m) => m.name !== '' && m.bitSize === 0);
        const c = runC(
          [
            `printf("size %zu\\n", sizeof(struct ${name}));`,
            `printf("align %zu\\n", _Alignof(struct ${name}));`,
            ...named.map((m) => `printf("${m.name} %zu\\n", offsetof(struct ${name}, ${uapiName(m.name)}));`),
          ].join('\n'),
          ['linux/kvm.h'],
        );
        expect(l.size).toBe(c.get('size'));
        expect(l.align).toBe(c.get('align'));
        for (const m of named) expect([m.name, m.offset]).toEqual([m.name, c.get(m.name)]);
      },
    );

    // Bitfields: cc tells where each lands by setting it to all ones in a zeroed struct.
    it.each([
      ['iphdr', 'linux/ip.h', 'ihl'],
      ['iphdr', 'linux/ip.h', 'version'],
      ['tcphdr', 'linux/tcp.h', 'doff'],
      ['tcphdr', 'linux/tcp.h', 'fin'],
      ['tcphdr', 'linux/tcp.h', 'cwr'],
    ])('struct %s (%s) bitfield %s: bit offset and width', (s, header, field) => {
      const m = Btf.vmlinux(VMLINUX).struct(s)!.members.find((x) => x.name === field)!;
      const c = runC(
        `struct ${s} v; memset(&v, 0, sizeof v); v.${field} = -1;
         unsigned char *p = (unsigned char *)&v; int first = -1, n = 0;
         for (int i = 0; i < (int)(sizeof v * 8); i++) if (p[i / 8] >> (i % 8) & 1) { if (first < 0) first = i; n++; }
         printf("first %d\\nbits %d\\n", first, n);`,
        [header],
      );
      expect(m.bitSize).toBeGreaterThan(0);
      expect([m.bitOffset, m.bitSize]).toEqual([c.get('first'), c.get('bits')]);
      expect(m.offset).toBe(Math.floor(c.get('first')! / 8));
    });
  });

  describe.skipIf(!haveBpftool)('every vmlinux type equals bpftool\'s dump', () => {
    it('matches kind, name, size, references, members, values and tags for all types', () => {
      const dump = JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', VMLINUX], { encoding: 'utf8', maxBuffer: 1 << 30 })) as {
        types: BpftoolType[];
      };
      const btf = Btf.vmlinux(VMLINUX);
      expect(btf.count - 1).toBe(dump.types.length);
      const kinds = new Set<string>();
      const mismatches: string[] = [];
      for (const d of dump.types) {
        const t: BtfType = btf.type(d.id);
        kinds.add(t.kind);
        const [ours, theirs] = comparable(t, d);
        const a = JSON.stringify(ours);
        const b = JSON.stringify(theirs);
        if (a !== b && mismatches.length < 10) mismatches.push(`type ${d.id}: ours ${a} bpftool ${b}`);
      }
      expect(mismatches).toEqual([]);
      console.log(`btf.test: ${dump.types.length} vmlinux types equal bpftool's; kinds present: ${[...kinds].sort().join(' ')}`);
    });
  });

  it('lays out every named struct and union in vmlinux; no ordinary member runs past its record', () => {
    const btf = Btf.vmlinux(VMLINUX);
    let n = 0;
    for (let id = 1; id < btf.count; id++) {
      const t = btf.type(id);
      if ((t.kind !== 'struct' && t.kind !== 'union') || t.name === '') continue;
      const l = btf.layoutOf(id);
      for (const m of l.members) {
        if (m.bitSize === 0) expect(m.offset + m.size, `${t.name}.${m.name}`).toBeLessThanOrEqual(l.size);
      }
      n++;
    }
    expect(n).toBeGreaterThan(1000);
  });

  it('reads sizeOf/alignOf/typeName for scalars, pointers and qualifiers', () => {
    const btf = Btf.vmlinux(VMLINUX);
    const id = (name: string, kind: Parameters<Btf['findByName']>[1]): number => btf.findByName(name, kind)!.id;
    expect([btf.sizeOf(id('__u64', 'typedef')), btf.alignOf(id('__u64', 'typedef')), btf.typeName(id('__u64', 'typedef'))]).toEqual([8, 8, '__u64']);
    expect(btf.sizeOf(0 + id('kvm_run', 'struct'))).toBe(2352);
    const vcpu = btf.struct('kvm_vcpu')!;
    const run = vcpu.members.find((m) => m.name === 'run')!;
    expect([run.kind, run.size, run.align, run.typeName]).toEqual(['ptr', 8, 8, 'struct kvm_run *']);
    expect(() => btf.sizeOf(0)).toThrow(/no size/);
    expect(() => btf.type(btf.count)).toThrow(/does not exist/);
  });
});
