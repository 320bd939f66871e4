// The committed BPF object must be built from the committed sources: scripts/build-bpf records the sha256
// of kvm_trace.bpf.c and of every header beside it (kvm_trace.h, kt_*.bpf.h) next to the object; editing,
// adding or removing one without rebuilding fails here. No compiler needed.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot, prebuiltObjectPath } from '../src/bpf/paths.js';
import { Btf, type BtfDatasec } from '../src/btf/index.js';

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
