/**
 * Btf.fromElf on a real object: a small C file compiled on the spot for the BPF target with clang (or, when
 * clang is missing, with gcc -gbtf, or the committed bpf/prebuilt object). The expected layout comes from
 * the host cc compiling the same declarations (sizeof/offsetof/_Alignof), and the decoded records are
 * compared with bpftool's dump of the same object when bpftool exists.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Btf, BtfError } from '../src/btf/index.js';

const have = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const PREBUILT = 'bpf/prebuilt/kvm_trace.bpf.o';

// Declarations shared by the BPF object and the host program that computes the truth.
const DECLS = `
#ifdef __bpf__
#define DECL_TAG(x) __attribute__((btf_decl_tag(x)))
#define TYPE_TAG(x) __attribute__((btf_type_tag(x)))
#else
#define DECL_TAG(x)
#define TYPE_TAG(x)
#endif
typedef unsigned long long u64;
struct bits { unsigned a:3, b:5; int c; long d[2][3]; union { char x; short y; }; };
struct __attribute__((packed)) pk { char c; int i; };
struct DECL_TAG("tagged") tagged { int v DECL_TAG("field"); u64 w; };
enum color { RED = 1, BLUE = 7 };
struct holder { struct bits b; struct pk p; char tail; struct tagged t; };
`;

const BPF_SRC = `${DECLS}
struct bits g_bits; struct pk g_pk; struct tagged g_tag; struct holder g_holder; enum color g_color; u64 g_u;
float g_f; const volatile int g_cv; int * TYPE_TAG("user") g_up; int * __restrict g_rp;
int fn(struct bits *b, int n) { return b->c + n; }
`;

const TRUTH_SRC = `#include <stdio.h>
#include <stddef.h>
${DECLS}
#define P(s) printf(#s " %zu %zu\\n", sizeof(struct s), _Alignof(struct s))
#define O(s, m) printf(#s "." #m " %zu\\n", offsetof(struct s, m))
int main(void) {
  P(bits); P(pk); P(tagged); P(holder);
  O(bits, c); O(bits, d); O(bits, x); O(pk, i); O(tagged, w); O(holder, p); O(holder, tail); O(holder, t);
  return 0;
}`;

type Built = { path: string; by: string; dir: string } | { skip: string };

function buildObject(): Built {
  const dir = mkdtempSync(join(tmpdir(), 'btf-elf-'));
  writeFileSync(join(dir, 'obj.c'), BPF_SRC);
  if (have('clang')) {
    execFileSync('clang', ['-target', 'bpf', '-g', '-O2', '-c', join(dir, 'obj.c'), '-o', join(dir, 'obj.o')], { stdio: 'pipe' });
    return { path: join(dir, 'obj.o'), by: 'clang -target bpf', dir };
  }
  if (have('gcc') && spawnSync('gcc', ['-gbtf', '-c', join(dir, 'obj.c'), '-o', join(dir, 'obj.o')]).status === 0) {
    return { path: join(dir, 'obj.o'), by: 'gcc -gbtf', dir };
  }
  rmSync(dir, { recursive: true, force: true });
  return { skip: 'neither clang nor gcc -gbtf is available' };
}

function hostTruth(): Map<string, number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'btf-truth-'));
  try {
    writeFileSync(join(dir, 't.c'), TRUTH_SRC);
    execFileSync('cc', ['-o', join(dir, 't'), join(dir, 't.c')], { stdio: 'pipe' });
    const out = execFileSync(join(dir, 't'), { encoding: 'utf8' });
    return new Map(out.trim().split('\n').map((l) => {
      const [k, ...v] = l.split(' ');
      return [k, v.map(Number)];
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const built = buildObject();
if ('skip' in built) console.log(`btf-elf.test: skipping the compiled-object tests: ${built.skip}`);
const haveCc = have('cc');
if (!haveCc) console.log('btf-elf.test: skipping layout truth checks: no cc');

describe.skipIf('skip' in built)('Btf.fromElf on a freshly compiled object', () => {
  const obj = built as { path: string; by: string; dir: string };
  const btf = (): Btf => Btf.fromElf(obj.path);
  afterAll(() => rmSync(obj.dir, { recursive: true, force: true }));

  it.skipIf(!haveCc).each(['bits', 'pk', 'tagged', 'holder'])('struct %s has the size and alignment cc gives it', (s) => {
    const [size, align] = hostTruth().get(s)!;
    const l = btf().struct(s)!;
    expect([l.size, l.align]).toEqual([size, align]);
  });

  it.skipIf(!haveCc).each([
    ['bits', 'c'], ['bits', 'd'], ['bits', 'x'], ['pk', 'i'], ['tagged', 'w'], ['holder', 'p'], ['holder', 'tail'], ['holder', 't'],
  ])('%s.%s is where cc puts it', (s, m) => {
    const [offset] = hostTruth().get(`${s}.${m}`)!;
    const l = btf().struct(s)!;
    const direct = l.members.find((x) => x.name === m);
    const viaAnon = l.members.filter((x) => x.name === '').map((x) => ({ x, inner: x.nested?.members.find((y) => y.name === m) }))
      .find((v) => v.inner);
    const got = direct ? direct.offset : viaAnon!.x.offset + viaAnon!.inner!.offset;
    expect(got).toBe(offset);
  });

  it('decodes bitfields, multi-dimensional arrays and the anonymous union of struct bits', () => {
    const l = btf().struct('bits')!;
    const by = (n: string) => l.members.find((m) => m.name === n)!;
    expect([by('a').bitOffset, by('a').bitSize, by('b').bitOffset, by('b').bitSize]).toEqual([0, 3, 3, 5]);
    expect(by('d').typeName).toBe('long[2][3]');
    expect([by('d').elemCount, by('d').elemSize, by('d').size]).toEqual([2, 24, 48]);
    const anon = l.members.find((m) => m.name === '')!;
    expect([anon.kind, anon.nested?.members.map((m) => m.name)]).toEqual(['union', ['x', 'y']]);
  });

  it('marks the packed struct align 1 and the holder that embeds it unpacked', () => {
    expect(btf().struct('pk')!.align).toBe(1);
    expect(btf().struct('holder')!.align).toBe(8);
  });

  it.skipIf(obj.by !== 'clang -target bpf')('carries decl_tag, type_tag, float, func, func_proto, var and datasec records', () => {
    const b = btf();
    const kinds = new Set(b.types.map((t) => t.kind));
    for (const k of ['decl_tag', 'type_tag', 'float', 'func', 'func_proto', 'var', 'datasec', 'enum', 'typedef', 'const', 'volatile', 'restrict']) {
      expect(kinds, k).toContain(k);
    }
    const tag = b.types.find((t) => t.kind === 'decl_tag' && t.name === 'field');
    expect(tag && tag.kind === 'decl_tag' ? [b.typeName(tag.type), tag.componentIdx] : undefined).toEqual(['struct tagged', 0]);
    const fn = b.findByName('fn', 'func');
    expect(fn && b.typeName(fn.type)).toBe('int (struct bits *, int)');
    const up = b.findByName('g_up', 'var');
    expect(up && b.typeName(up.type)).toBe('int __attribute__((btf_type_tag("user"))) *');
  });

  it.skipIf(!have('bpftool'))('decodes every record the way bpftool does', () => {
    const dump = JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', obj.path], { encoding: 'utf8' })) as {
      types: Array<{ id: number; kind: string; name: string; size?: number; type_id?: number }>;
    };
    const b = btf();
    expect(b.count - 1).toBe(dump.types.length);
    for (const d of dump.types) {
      const t = b.type(d.id);
      expect([t.kind.toUpperCase(), t.name || '(anon)'], `type ${d.id}`).toEqual([d.kind, d.name]);
      if (d.size !== undefined && t.kind !== 'datasec') expect((t as { size: number }).size).toBe(d.size);
      if (d.type_id !== undefined) expect((t as { type: number }).type).toBe(d.type_id);
    }
  });
});

describe('Btf.fromElf errors', () => {
  it.each([
    ['not an ELF file', new Uint8Array(100), /not an ELF file/],
    ['a 32-bit ELF', Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 1, 1, ...new Array(58).fill(0)]), /32-bit/],
  ])('%s gives one clear error', (_what, bytes, msg) => {
    const dir = mkdtempSync(join(tmpdir(), 'btf-bad-'));
    try {
      writeFileSync(join(dir, 'x.o'), bytes);
      expect(() => Btf.fromElf(join(dir, 'x.o'))).toThrow(msg);
      expect(() => Btf.fromElf(join(dir, 'x.o'))).toThrow(BtfError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names a missing file', () => {
    expect(() => Btf.fromElf('/nonexistent/kvm.o')).toThrow(/cannot read ELF object \/nonexistent\/kvm.o: ENOENT/);
  });

  it.skipIf(!have('cc'))('says when an ELF object has no .BTF section', () => {
    const dir = mkdtempSync(join(tmpdir(), 'btf-nobtf-'));
    try {
      writeFileSync(join(dir, 'a.c'), 'int x;\n');
      execFileSync('cc', ['-c', join(dir, 'a.c'), '-o', join(dir, 'a.o')]);
      expect(() => Btf.fromElf(join(dir, 'a.o'))).toThrow(/has no \.BTF section/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!existsSync(PREBUILT))('the committed BPF object', () => {
  it('has the kt_hdr record every event starts with', () => {
    const l = Btf.fromElf(PREBUILT).struct('kt_hdr');
    expect(l?.kind).toBe('struct');
    expect(l!.members.length).toBeGreaterThan(0);
  });
});
