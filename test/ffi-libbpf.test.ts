// Why the rodata filters are placed with libbpf's view of the object's BTF (src/ffi/libbpf/datasec.ts) and
// not with src/btf's reader of the ELF .BTF: clang leaves DATASEC sizes and variable offsets at 0 and libbpf
// fills them in from the ELF symbol table when it opens the object. Opening needs no privileges.
import { describe, expect, it } from 'vitest';
import { prebuiltObjectPath } from '../src/bpf/paths.js';
import { Btf } from '../src/btf/index.js';
import { closeObject, datasecVars, libbpfUnavailable, openObjectFile } from '../src/ffi/libbpf.js';

const why = libbpfUnavailable();
if (why) console.log(`ffi-libbpf: skipped — ${why}`);

describe.skipIf(why !== undefined)('datasecVars on bpf/prebuilt/kvm_trace.bpf.o', () => {
  const path = prebuiltObjectPath();
  const raw = Btf.fromElf(path).findByName('.rodata', 'datasec');
  const obj = why ? undefined : openObjectFile(path);
  const fixed = obj ? datasecVars(obj, '.rodata') : [];
  if (obj) closeObject(obj);

  it('names the same variables, with the same sizes, as the raw .BTF', () => {
    expect(raw?.kind).toBe('datasec');
    const rawVars = raw!.kind === 'datasec' ? raw!.vars : [];
    const btf = Btf.fromElf(path);
    expect(fixed.map((v) => [v.name, v.size])).toEqual(rawVars.map((v) => [btf.type(v.type).name, v.size]));
  });

  it("places them where the raw .BTF cannot: distinct, ascending offsets inside libbpf's section", () => {
    const rawOffsets = raw!.kind === 'datasec' ? raw!.vars.map((v) => v.offset) : [];
    expect(new Set(rawOffsets)).toEqual(new Set([0])); // clang's DATASEC, before libbpf's fix-up
    const offsets = fixed.map((v) => v.offset);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    expect(new Set(offsets).size).toBe(offsets.length);
    for (let i = 1; i < fixed.length; i++) expect(fixed[i].offset).toBeGreaterThanOrEqual(fixed[i - 1].offset + fixed[i - 1].size);
  });
});
