// The committed BPF object must be what its committed sources build to. Two checks:
//  1. scripts/build-bpf records the sha256 of kvm_trace.bpf.c and of every header beside it (kvm_trace.h,
//     kt_*.bpf.h) next to the object; editing, adding or removing one without rebuilding fails here (no
//     compiler needed: runs everywhere);
//  2. the object is rebuilt here with the pinned toolchain (Debian 12's clang 14, bpftool, libbpf-dev —
//     bootstrap's test packages) into a temporary directory and compared with the committed one: each
//     program section's instructions (CO-RE-rewritten fields masked), relocations, CO-RE relocations, the
//     maps, the event layout's BTF, license and .rodata (scripts/lib/bpf-object-diff.ts says why not byte
//     for byte). An object that was never rebuilt after an edit fails here even if its hash file was updated.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot, prebuiltObjectPath } from '../src/bpf/paths.js';
import { Btf, type BtfDatasec } from '../src/btf/index.js';
import { diffBpfObjects } from '../scripts/lib/bpf-object-diff.js';

const root = packageRoot();
const recorded = readFileSync(join(root, 'bpf', 'prebuilt', 'SOURCES.sha256'), 'utf8')
  .trim()
  .split('\n')
  .map((line) => {
    const m = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line);
    if (!m) throw new Error(`bad SOURCES.sha256 line: ${line}`);
    return { hash: m[1], file: m[2] };
  });

describe('bpf/prebuilt', () => {
  it('records a hash for every source in bpf/ (the .bpf.c and each header)', () => {
    const sources = readdirSync(join(root, 'bpf')).filter((f) => f.endsWith('.bpf.c') || f.endsWith('.h'));
    expect(sources).toContain('kvm_trace.bpf.c');
    expect(sources).toContain('kvm_trace.h');
    expect(recorded.map((r) => r.file).sort()).toEqual(sources.sort());
  });

  it.each(recorded)('$file is unchanged since the object was built (else run `npm run build-bpf`)', ({ hash, file }) => {
    const actual = createHash('sha256').update(readFileSync(join(root, 'bpf', file))).digest('hex');
    expect(actual, `bpf/${file} changed after bpf/prebuilt/kvm_trace.bpf.o was built: run npm run build-bpf`).toBe(hash);
  });

  it('the object is a 64-bit little-endian BPF ELF with BTF', () => {
    const elf = readFileSync(prebuiltObjectPath());
    expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(elf[4]).toBe(2); // ELFCLASS64
    expect(elf[5]).toBe(1); // little-endian
    expect(elf.readUInt16LE(18)).toBe(247); // EM_BPF
    expect(elf.includes(Buffer.from('.BTF\0'))).toBe(true);
    expect(elf.includes(Buffer.from('tracepoint/syscalls/sys_exit_ioctl\0'))).toBe(true);
  });

  // An untyped extern (`extern const void sym __ksym`) makes libbpf read and parse all of /proc/kallsyms at
  // every load: 40-90 ms of attach measured here. Typed ones (kfuncs, BTF-typed variables) resolve from BTF.
  it('has no untyped __ksym extern (libbpf would read /proc/kallsyms at every load)', () => {
    const btf = Btf.fromElf(prebuiltObjectPath());
    const ksyms = btf.findByName('.ksyms', 'datasec') as BtfDatasec | undefined;
    const untyped = (ksyms?.vars ?? [])
      .map((v) => btf.type(v.type))
      .filter((t) => t.kind === 'var' && btf.resolve(t.type).kind === 'void')
      .map((t) => t.name);
    expect(untyped).toEqual([]);
  });
});

/** Why the pinned toolchain cannot rebuild here (printed), or undefined. */
function toolchainMissing(): string | undefined {
  const clang = spawnSync('clang', ['--version'], { encoding: 'utf8' });
  if (clang.status !== 0) return 'no clang (the bpf-build packages: node scripts/bootstrap.mjs --bpf-build)';
  const major = /clang version (\d+)\./.exec(clang.stdout)?.[1];
  if (major !== '14') return `clang ${major ?? '?'} here; the committed object is built with Debian 12's clang 14`;
  for (const [tool, args] of [['llvm-strip', ['--version']], ['bpftool', ['version']]] as const) {
    if (spawnSync(tool, args).status !== 0 && spawnSync(`/usr/sbin/${tool}`, args).status !== 0) return `no ${tool}`;
  }
  if (spawnSync('test', ['-f', '/usr/include/bpf/bpf_helpers.h']).status !== 0) return 'no libbpf-dev headers';
  try {
    readFileSync('/sys/kernel/btf/vmlinux', { flag: 'r' }).subarray(0, 1);
  } catch {
    return 'no /sys/kernel/btf/vmlinux to generate vmlinux.h from';
  }
  return undefined;
}

const missing = toolchainMissing();
if (missing) console.log(`bpf-prebuilt rebuild skipped: ${missing}`);

describe.skipIf(missing !== undefined)('bpf/prebuilt rebuilt with the pinned toolchain', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-bpf-build-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('equals the committed object: instructions, relocations, CO-RE relocations, maps, event layout, license, rodata', () => {
    const r = spawnSync('bash', [join(root, 'scripts', 'build-bpf'), '--out', dir], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const header = readFileSync(join(root, 'bpf', 'kvm_trace.h'), 'utf8');
    const diff = diffBpfObjects(prebuiltObjectPath(), join(dir, 'kvm_trace.bpf.o'), header);
    expect(diff, `the committed object is not what its sources build to: run npm run build-bpf\n${diff.join('\n')}`).toEqual([]);
  });

  it('the comparison sees a change: an object built from edited sources differs', () => {
    // A copy of bpf/ with one constant changed (fcntl's F_DUPFD_CLOEXEC), compiled with build-bpf's flags
    // against the vmlinux.h the rebuild above generated.
    const copy = join(dir, 'src');
    spawnSync('cp', ['-r', join(root, 'bpf'), copy]);
    const h = join(copy, 'kt_fd_track.bpf.h');
    const text = readFileSync(h, 'utf8');
    expect(text).toContain('#define KT_F_DUPFD_CLOEXEC 1030');
    writeFileSync(h, text.replace('#define KT_F_DUPFD_CLOEXEC 1030', '#define KT_F_DUPFD_CLOEXEC 1031'));
    const obj = join(dir, 'edited.bpf.o');
    const cc = spawnSync(
      'clang',
      ['-g', '-O2', '-target', 'bpf', '-D__TARGET_ARCH_x86', `-I${dir}`, `-I${copy}`, '-idirafter', '/usr/include/x86_64-linux-gnu', '-idirafter', '/usr/include', '-c', join(copy, 'kvm_trace.bpf.c'), '-o', obj],
      { encoding: 'utf8' },
    );
    expect(cc.status, cc.stderr).toBe(0);
    const diff = diffBpfObjects(prebuiltObjectPath(), obj, readFileSync(join(root, 'bpf', 'kvm_trace.h'), 'utf8'));
    expect(diff.some((d) => d.startsWith('tracepoint/syscalls/sys_exit_fcntl: instruction '))).toBe(true);
    expect(diff.every((d) => d.startsWith('tracepoint/syscalls/sys_exit_fcntl'))).toBe(true);
  });
});
