/**
 * BTF reader: the kernel's own description of its types (/sys/kernel/btf/vmlinux, raw BTF) or of a BPF
 * object's types (the .BTF section of its ELF). kvm-trace reads struct layouts from here instead of
 * hard-coding offsets: kvm_run's fields, ioctl argument sizes, the natural alignment of a copied buffer.
 *
 * Pure TypeScript, no libbpf: parsing is one pass over the type records, and types are decoded on demand
 * (see raw.ts), so opening vmlinux BTF stays cheap. Sizes and alignments follow the x86_64/BPF LP64 rules.
 */
import { readFileSync } from 'node:fs';
import { elfSection } from './elf.js';
import { RawBtf } from './raw.js';
import { isIntBitfield, structLayout, type StructLayout } from './layout.js';
import { BTF_KIND_NAMES, BtfError, type BtfKindName, type BtfType } from './types.js';

export type { StructLayout, MemberLayout } from './layout.js';
export * from './types.js';

/** BTF records no pointer size; x86_64 and the BPF target are both LP64. */
const POINTER_SIZE = 8;
const MAX_DEPTH = 64;
const VMLINUX = '/sys/kernel/btf/vmlinux';

const MODIFIERS = new Set<BtfKindName>(['typedef', 'const', 'volatile', 'restrict', 'type_tag']);

export class Btf {
  private static readonly vmlinuxCache = new Map<string, Btf>();
  private readonly nameCache = new Map<string, number[]>();
  private readonly alignCache = new Map<number, number>();
  private readonly layoutCache = new Map<number, StructLayout>();
  private allTypes: BtfType[] | undefined;

  private constructor(
    private readonly raw: RawBtf,
    /** Where the BTF came from, for messages. */
    readonly source: string,
  ) {}

  /** The running kernel's BTF (or the raw BTF file at `path`), parsed once per path. */
  static vmlinux(path: string = VMLINUX): Btf {
    let btf = Btf.vmlinuxCache.get(path);
    if (!btf) {
      btf = new Btf(new RawBtf(readBytes(path, 'kernel BTF')), path);
      Btf.vmlinuxCache.set(path, btf);
    }
    return btf;
  }

  /** The .BTF section of an ELF object (a clang-built BPF object, or a vmlinux image). */
  static fromElf(path: string): Btf {
    const bytes = readBytes(path, 'ELF object');
    const sec = elfSection(bytes, '.BTF', path);
    if (!sec) throw new BtfError(`${path} has no .BTF section (built without -g?)`);
    return new Btf(new RawBtf(sec), `${path}:.BTF`);
  }

  /** Raw BTF bytes; with `base`, split BTF whose ids and strings continue the base's (kernel modules). */
  static fromRaw(bytes: Uint8Array, base?: Btf, source?: string): Btf {
    return new Btf(new RawBtf(bytes, base?.raw), source ?? (base ? `split BTF on ${base.source}` : 'raw BTF'));
  }

  /** The raw BTF this was read from (this level only, for split BTF): what a binary capture keeps. */
  get bytes(): Uint8Array {
    return this.raw.bytes;
  }

  /** Number of type ids including void: valid ids are 0 .. count-1. */
  get count(): number {
    return this.raw.count;
  }

  /** Every type, index = id (0 = void). Decodes all of them on first use: prefer type(id) for a few. */
  get types(): BtfType[] {
    this.allTypes ??= Array.from({ length: this.raw.count }, (_, id) => this.raw.type(id));
    return this.allTypes;
  }

  /** Type `id`; throws a BtfError for an id that does not exist. */
  type(id: number): BtfType {
    return this.raw.type(id);
  }

  /** Ids of every type called `name` (of `kind`, when given), in id order. */
  findAllByName(name: string, kind?: BtfKindName): number[] {
    let ids = this.nameCache.get(name);
    if (!ids) {
      ids = [];
      for (let level: RawBtf | undefined = this.raw; level; level = level.base) ids = [...level.idsNamed(name), ...ids];
      if (this.nameCache.size >= 4096) this.nameCache.clear();
      this.nameCache.set(name, ids);
    }
    if (!kind) return ids;
    const k = BTF_KIND_NAMES.indexOf(kind);
    return ids.filter((id) => this.kindNumber(id) === k);
  }

  /**
   * The type called `name` (of `kind`, when given). Without a kind, a complete definition wins over a
   * forward declaration.
   */
  findByName(name: string, kind?: BtfKindName): BtfType | undefined {
    const ids = this.findAllByName(name, kind);
    if (ids.length === 0) return undefined;
    const complete = kind ? ids[0] : (ids.find((id) => this.kindNumber(id) !== 7) ?? ids[0]);
    return this.type(complete);
  }

  /** Layout of the struct or union `name` ("kvm_run", "struct kvm_run", or a typedef of one). */
  struct(name: string): StructLayout | undefined {
    const bare = name.replace(/^(struct|union)\s+/, '');
    const want = /^union\s/.test(name) ? 'union' : /^struct\s/.test(name) ? 'struct' : undefined;
    let t: BtfType | undefined =
      want ? this.findByName(bare, want) : (this.findByName(bare, 'struct') ?? this.findByName(bare, 'union'));
    if (!t && !want) {
      const td = this.findByName(bare, 'typedef');
      if (td) t = this.resolve(td.id);
    }
    if (!t || (t.kind !== 'struct' && t.kind !== 'union')) return undefined;
    return this.layoutOf(t.id);
  }

  /** Layout of the struct/union with type id `id` (cached). */
  layoutOf(id: number): StructLayout {
    let l = this.layoutCache.get(id);
    if (!l) {
      l = structLayout(this, id);
      this.layoutCache.set(id, l);
    }
    return l;
  }

  /** The type behind typedefs and const/volatile/restrict/type_tag qualifiers. */
  resolve(id: number): BtfType {
    let t = this.type(id);
    for (let depth = 0; MODIFIERS.has(t.kind); depth++) {
      if (depth > MAX_DEPTH) throw new BtfError(`BTF type ${id}: modifier chain too long (a cycle?)`);
      t = this.type((t as { type: number }).type);
    }
    return t;
  }

  /** sizeof in bytes. Throws for types without a size (void, functions, forward declarations). */
  sizeOf(id: number, depth = 0): number {
    if (depth > MAX_DEPTH) throw new BtfError(`BTF type ${id}: nesting too deep (a cycle?)`);
    const t = this.resolve(id);
    switch (t.kind) {
      case 'int': case 'float': case 'enum': case 'enum64': case 'struct': case 'union': case 'datasec':
        return t.size;
      case 'ptr':
        return POINTER_SIZE;
      case 'array':
        return t.nelems * this.sizeOf(t.type, depth + 1);
      default:
        throw new BtfError(`BTF type ${id} (${this.typeName(id)}, ${t.kind}) has no size`);
    }
  }

  /**
   * Natural alignment in bytes. BTF stores none, so it is computed as a C compiler would: scalars by their
   * size, arrays by their element, records by their most aligned member — except packed records (a member
   * at an offset its alignment forbids, or a size that is not a multiple of the alignment), which get 1.
   */
  alignOf(id: number, depth = 0): number {
    const cached = this.alignCache.get(id);
    if (cached !== undefined) return cached;
    if (depth > MAX_DEPTH) throw new BtfError(`BTF type ${id}: nesting too deep (a cycle?)`);
    const t = this.resolve(id);
    let a: number;
    switch (t.kind) {
      case 'int': case 'float': case 'enum': case 'enum64':
        a = Math.min(Math.max(t.size, 1), 16);
        break;
      case 'ptr':
        a = POINTER_SIZE;
        break;
      case 'array':
        a = this.alignOf(t.type, depth + 1);
        break;
      case 'struct':
      case 'union': {
        a = 1;
        let packed = false;
        for (const m of t.members) {
          const ma = this.alignOf(m.type, depth + 1);
          a = Math.max(a, ma);
          if (m.bitfieldSize === 0 && !isIntBitfield(this.resolve(m.type)) && (m.bitOffset % (8 * ma)) !== 0) packed = true;
        }
        if (t.size % a !== 0) packed = true;
        if (packed) a = 1;
        break;
      }
      default:
        throw new BtfError(`BTF type ${id} (${this.typeName(id)}, ${t.kind}) has no alignment`);
    }
    this.alignCache.set(id, a);
    return a;
  }

  /** The C spelling of a type: "__u64", "struct kvm_segment", "__u8[16]", "const char *", "void (*)(int)". */
  typeName(id: number, depth = 0): string {
    if (depth > MAX_DEPTH) return '...';
    const t = this.type(id);
    switch (t.kind) {
      case 'void':
        return 'void';
      case 'int': case 'float': case 'typedef':
        return t.name;
      case 'struct': case 'union':
        return `${t.kind} ${t.name || '<anon>'}`;
      case 'enum': case 'enum64':
        return `enum ${t.name || '<anon>'}`;
      case 'fwd':
        return `${t.fwdKind} ${t.name}`;
      case 'const': case 'volatile': case 'restrict':
        return `${t.kind} ${this.typeName(t.type, depth + 1)}`;
      case 'type_tag':
        return `${this.typeName(t.type, depth + 1)} __attribute__((btf_type_tag("${t.name}")))`;
      case 'ptr': {
        const target = this.type(t.type);
        if (target.kind === 'func_proto') return this.protoName(target.returnType, target.params, '(*)', depth);
        const inner = this.typeName(t.type, depth + 1);
        return inner.endsWith('*') ? `${inner}*` : `${inner} *`;
      }
      case 'array': {
        const elem = this.typeName(t.type, depth + 1);
        const i = elem.indexOf('[');
        return i < 0 ? `${elem}[${t.nelems}]` : `${elem.slice(0, i)}[${t.nelems}]${elem.slice(i)}`;
      }
      case 'func_proto':
        return this.protoName(t.returnType, t.params, '', depth);
      case 'func': case 'var': case 'datasec': case 'decl_tag':
        return t.name;
    }
  }

  private protoName(ret: number, params: Array<{ type: number }>, mid: string, depth: number): string {
    const args = params.map((p) => (p.type === 0 ? '...' : this.typeName(p.type, depth + 1)));
    return `${this.typeName(ret, depth + 1)} ${mid}(${args.join(', ') || 'void'})`;
  }

  private kindNumber(id: number): number {
    let level: RawBtf | undefined = this.raw;
    while (level && id < level.firstId) level = level.base;
    return level ? level.kindOf(id) : 0;
  }
}

/** Every string offset, in `level` or its bases, at which `name` is stored. */
function readBytes(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' && path === VMLINUX ? ' (kernel built without CONFIG_DEBUG_INFO_BTF?)' : '';
    throw new BtfError(`cannot read ${what} ${path}: ${code ?? (err as Error).message}${hint}`, { cause: err });
  }
}
