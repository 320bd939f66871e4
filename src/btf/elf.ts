/**
 * Just enough ELF64 to find a section by name: BPF objects built by clang carry their types in a `.BTF`
 * section (and vmlinux images do too). Reads the section header table and the section-name string table;
 * nothing else of the ELF is interpreted.
 */
import { BtfError } from './types.js';

export interface ElfSection {
  name: string;
  type: number;
  offset: number;
  size: number;
  /** sh_flags (SHF_EXECINSTR = 4: program code), sh_link and sh_info (a relocation section's target). */
  flags: number;
  link: number;
  info: number;
}

const SHN_XINDEX = 0xffff;
const SHT_NOBITS = 8;

/** Every section of an ELF64 image (either byte order). Throws a BtfError for anything else. */
export function elfSections(bytes: Uint8Array, what = 'file'): ElfSection[] {
  if (bytes.length < 64 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
    throw new BtfError(`${what} is not an ELF file`);
  }
  if (bytes[4] !== 2) throw new BtfError(`${what} is a 32-bit ELF file; BPF objects are ELF64`);
  const le = bytes[5] === 1;
  if (!le && bytes[5] !== 2) throw new BtfError(`${what}: unknown ELF byte order ${bytes[5]}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u64 = (off: number): number => {
    const v = dv.getBigUint64(off, le);
    if (v > BigInt(bytes.length)) throw new BtfError(`${what}: ELF offset ${v} past the end of the file`);
    return Number(v);
  };
  const shoff = u64(0x28);
  const shentsize = dv.getUint16(0x3a, le);
  let shnum = dv.getUint16(0x3c, le);
  let shstrndx = dv.getUint16(0x3e, le);
  if (shoff === 0) return [];
  if (shentsize < 64) throw new BtfError(`${what}: bad ELF section header size ${shentsize}`);
  // Extended numbering: the real counts live in section 0.
  if (shnum === 0) shnum = u64(shoff + 32);
  if (shstrndx === SHN_XINDEX) shstrndx = dv.getUint32(shoff + 40, le);
  if (shoff + shnum * shentsize > bytes.length) throw new BtfError(`${what}: ELF section headers run past the end of the file`);
  const raw = Array.from({ length: shnum }, (_, i) => {
    const h = shoff + i * shentsize;
    return {
      nameOff: dv.getUint32(h, le),
      type: dv.getUint32(h + 4, le),
      flags: Number(dv.getBigUint64(h + 8, le) & 0xffffffffn),
      offset: u64(h + 24),
      size: u64(h + 32),
      link: dv.getUint32(h + 40, le),
      info: dv.getUint32(h + 44, le),
    };
  });
  const strtab = raw[shstrndx];
  if (!strtab) throw new BtfError(`${what}: ELF section-name table index ${shstrndx} out of range`);
  const name = (off: number): string => {
    const start = strtab.offset + off;
    let end = start;
    while (end < strtab.offset + strtab.size && bytes[end] !== 0) end++;
    return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('utf8');
  };
  return raw.map((s) => {
    if (s.type !== SHT_NOBITS && s.offset + s.size > bytes.length) {
      throw new BtfError(`${what}: ELF section ${name(s.nameOff)} runs past the end of the file`);
    }
    return { name: name(s.nameOff), type: s.type, offset: s.offset, size: s.size, flags: s.flags, link: s.link, info: s.info };
  });
}

/** The bytes of the section called `name` (a view, not a copy), or undefined when there is none. */
export function elfSection(bytes: Uint8Array, name: string, what = 'file'): Uint8Array | undefined {
  const s = elfSections(bytes, what).find((x) => x.name === name);
  if (!s || s.type === SHT_NOBITS) return undefined;
  return bytes.subarray(s.offset, s.offset + s.size);
}
