/**
 * What differs between two builds of kvm-trace's BPF object, in the parts that decide what runs in the
 * kernel and what user space reads — not byte for byte, since the object also carries the building
 * kernel's types (CO-RE: every kernel struct it touches is in its BTF, as vmlinux.h of that machine spelled
 * it; measured: two 6.18 builds differ in struct kvm_vcpu_stat):
 *   - each program section's instructions, the fields CO-RE rewrites at load masked (a field offset the
 *     building kernel put there), and its relocations (maps, subprograms) by symbol name;
 *   - each program's CO-RE relocations: instruction, kind, type name and access path;
 *   - the maps (.maps): every definition member (type, max_entries, key and value types and sizes, flags);
 *   - the event layout: every struct and enum of bpf/kvm_trace.h in the object's BTF, member by member;
 *   - the license and the .rodata image.
 * Dev tooling for test/bpf-prebuilt.test.ts (the committed object must equal a rebuild of its sources).
 */
import { readFileSync } from 'node:fs';
import { Btf } from '../../src/btf/index.js';
import { elfSections, type ElfSection } from '../../src/btf/elf.js';
import { flattenLayout } from '../../src/btf/layout.js';

const SHF_EXECINSTR = 4;
const SHT_REL = 9;
const SHT_SYMTAB = 2;
const BPF_LD_IMM64 = 0x18;

interface CoreRelo {
  insnOff: number;
  typeName: string;
  access: string;
  kind: number;
}

interface ObjectView {
  bytes: Uint8Array;
  dv: DataView;
  sections: ElfSection[];
  btf: Btf;
  /** .BTF string table (for .BTF.ext offsets). */
  btfStr: (off: number) => string;
}

function open(path: string): ObjectView {
  const bytes = new Uint8Array(readFileSync(path));
  const sections = elfSections(bytes, path);
  const btfSec = sections.find((s) => s.name === '.BTF');
  if (!btfSec) throw new Error(`${path} has no .BTF section`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const strStart = btfSec.offset + dv.getUint32(btfSec.offset + 4, true) + dv.getUint32(btfSec.offset + 16, true);
  const btfStr = (off: number): string => {
    let end = strStart + off;
    while (bytes[end] !== 0 && end < bytes.length) end++;
    return Buffer.from(bytes.subarray(strStart + off, end)).toString('latin1');
  };
  return { bytes, dv, sections, btf: Btf.fromElf(path), btfStr };
}

const sectionBytes = (o: ObjectView, s: ElfSection): Uint8Array => o.bytes.subarray(s.offset, s.offset + s.size);

/** Symbol names by index (.symtab). */
function symbols(o: ObjectView): string[] {
  const sym = o.sections.find((s) => s.type === SHT_SYMTAB);
  if (!sym) return [];
  const strtab = o.sections[sym.link];
  const out: string[] = [];
  for (let p = sym.offset; p + 24 <= sym.offset + sym.size; p += 24) {
    let end = strtab.offset + o.dv.getUint32(p, true);
    const start = end;
    while (o.bytes[end] !== 0) end++;
    const name = Buffer.from(o.bytes.subarray(start, end)).toString('latin1');
    const shndx = o.dv.getUint16(p + 6, true);
    // A section symbol has no name of its own: use its section's.
    out.push(name || (o.sections[shndx]?.name ?? ''));
  }
  return out;
}

/** CO-RE relocations per program section (.BTF.ext core_relo). */
function coreRelos(o: ObjectView): Map<string, CoreRelo[]> {
  const out = new Map<string, CoreRelo[]>();
  const ext = o.sections.find((s) => s.name === '.BTF.ext');
  if (!ext) return out;
  const dv = o.dv;
  const base = ext.offset;
  const hdrLen = dv.getUint32(base + 4, true);
  if (hdrLen < 32) return out;
  const off = base + hdrLen + dv.getUint32(base + 24, true);
  const end = off + dv.getUint32(base + 28, true);
  if (end <= off) return out;
  const recSize = dv.getUint32(off, true);
  for (let p = off + 4; p + 8 <= end; ) {
    const sec = o.btfStr(dv.getUint32(p, true));
    const n = dv.getUint32(p + 4, true);
    const list: CoreRelo[] = [];
    for (let i = 0; i < n; i++) {
      const r = p + 8 + i * recSize;
      list.push({
        insnOff: dv.getUint32(r, true),
        typeName: o.btf.typeName(dv.getUint32(r + 4, true)),
        access: o.btfStr(dv.getUint32(r + 8, true)),
        kind: dv.getUint32(r + 12, true),
      });
    }
    out.set(sec, list);
    p += 8 + n * recSize;
  }
  return out;
}

/** A program section's instructions with the fields CO-RE rewrites zeroed (off and imm of each relocated insn). */
function maskedInsns(o: ObjectView, s: ElfSection, relos: CoreRelo[]): Uint8Array {
  const b = sectionBytes(o, s).slice();
  for (const r of relos) {
    const at = r.insnOff;
    if (at + 8 > b.length) continue;
    b.fill(0, at + 2, at + 8);
    if (b[at] === BPF_LD_IMM64 && at + 16 <= b.length) b.fill(0, at + 12, at + 16);
  }
  return b;
}

/** Relocations of section index `idx` as "offset symbol type" lines. */
function relocations(o: ObjectView, idx: number, syms: string[]): string[] {
  const rel = o.sections.find((s) => s.type === SHT_REL && s.info === idx);
  if (!rel) return [];
  const out: string[] = [];
  for (let p = rel.offset; p + 16 <= rel.offset + rel.size; p += 16) {
    const info = o.dv.getBigUint64(p + 8, true);
    out.push(`${o.dv.getBigUint64(p, true)} ${syms[Number(info >> 32n)]} ${Number(info & 0xffffffffn)}`);
  }
  return out;
}

/** Each map of .maps as "name: member=value …" (values: __uint numbers, __type names and sizes). */
function maps(o: ObjectView): string[] {
  const sec = o.btf.findByName('.maps', 'datasec');
  if (!sec || sec.kind !== 'datasec') return [];
  return sec.vars.map((v) => {
    const variable = o.btf.type(v.type);
    const def = o.btf.resolve(variable.kind === 'var' ? variable.type : v.type);
    if (def.kind !== 'struct') return `${variable.name}: not a struct`;
    const members = def.members.map((m) => {
      const t = o.btf.resolve(m.type);
      if (t.kind !== 'ptr') return `${m.name}?`;
      const to = o.btf.resolve(t.type);
      if (to.kind === 'array') return `${m.name}=${to.nelems}`; // __uint(name, value)
      return `${m.name}:${o.btf.typeName(t.type)}/${o.btf.sizeOf(t.type)}`; // __type(name, T)
    });
    return `${variable.name}: ${members.join(' ')}`;
  });
}

/** Every struct and enum of the layout header, member by member, as the object's BTF has them. */
function layout(o: ObjectView, header: string): string[] {
  const out: string[] = [];
  for (const [, kind, name] of header.matchAll(/^(struct|enum) (kt_\w+) \{/gm)) {
    if (kind === 'struct') {
      const l = o.btf.struct(`struct ${name}`);
      out.push(l ? `struct ${name} ${l.size}: ${flattenLayout(l).map((m) => `${m.path}@${m.offset}+${m.size}`).join(' ')}` : `struct ${name}: missing`);
    } else {
      const e = o.btf.findByName(name, 'enum');
      out.push(e?.kind === 'enum' ? `enum ${name}: ${e.values.map((v) => `${v.name}=${v.value}`).join(' ')}` : `enum ${name}: missing`);
    }
  }
  return out;
}

function listDiff(what: string, a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n && out.length < 5; i++) {
    if (a[i] !== b[i]) out.push(`${what}: committed ${a[i] ?? '(none)'} / rebuilt ${b[i] ?? '(none)'}`);
  }
  return out;
}

/**
 * The differences between the committed object `committed` and a fresh build `rebuilt` (empty: they are the
 * same program). `header` is the text of bpf/kvm_trace.h.
 */
export function diffBpfObjects(committed: string, rebuilt: string, header: string): string[] {
  const a = open(committed);
  const b = open(rebuilt);
  const out: string[] = [];
  const progs = (o: ObjectView): ElfSection[] => o.sections.filter((s) => (s.flags & SHF_EXECINSTR) !== 0 && s.size > 0);
  const pa = progs(a);
  const pb = progs(b);
  out.push(...listDiff('program sections', pa.map((s) => s.name), pb.map((s) => s.name)));
  const ra = coreRelos(a);
  const rb = coreRelos(b);
  const sa = symbols(a);
  const sb = symbols(b);
  for (const s of pa) {
    const t = pb.find((x) => x.name === s.name);
    if (!t) continue;
    const relA = ra.get(s.name) ?? [];
    const relB = rb.get(s.name) ?? [];
    const fmt = (r: CoreRelo): string => `insn ${r.insnOff / 8} kind ${r.kind} ${r.typeName} ${r.access}`;
    out.push(...listDiff(`${s.name} CO-RE relocations`, relA.map(fmt), relB.map(fmt)));
    const ia = maskedInsns(a, s, relA);
    const ib = maskedInsns(b, t, relB);
    if (ia.length !== ib.length) out.push(`${s.name}: ${ia.length / 8} instructions committed, ${ib.length / 8} rebuilt`);
    else {
      const at = ia.findIndex((x, i) => x !== ib[i]);
      if (at >= 0) out.push(`${s.name}: instruction ${Math.floor(at / 8)} differs`);
    }
    out.push(...listDiff(`${s.name} relocations`, relocations(a, a.sections.indexOf(s), sa), relocations(b, b.sections.indexOf(t), sb)));
  }
  out.push(...listDiff('maps', maps(a), maps(b)));
  out.push(...listDiff('event layout', layout(a, header), layout(b, header)));
  for (const name of ['license', '.rodata']) {
    const x = a.sections.find((s) => s.name === name);
    const y = b.sections.find((s) => s.name === name);
    const same = x && y ? Buffer.from(sectionBytes(a, x)).equals(Buffer.from(sectionBytes(b, y))) : x === y;
    if (!same) out.push(`${name} section differs`);
  }
  return out;
}
