/**
 * Generic decoding of captured ioctl argument bytes from the running kernel's BTF: no layout or offset is
 * typed here. Each struct is compiled ONCE into a generated function (cached by type id), so decoding a
 * record does no BTF walk. The output is the `args` contract of src/decode/records.ts:
 *
 * - a plain object keyed by BTF member names; members of anonymous structs/unions are flattened into the
 *   parent (C-style access: kvm_irq_level.irq, kvm_dirty_log.dirty_bitmap);
 * - integers are numbers when exact (|v| ≤ Number.MAX_SAFE_INTEGER), else "0x…" strings;
 * - pointers (BTF ptr) and 64-bit integers named like addresses (…addr…, …address…, base, …bitmap…, gpa,
 *   hva, phys…; also apic_base-style …base) are "0x…" strings;
 * - byte (char/__u8) arrays longer than 16 are hex strings in memory order without "0x" ("0a1b…"), shorter
 *   ones number arrays; other arrays are arrays; nested named structs are objects;
 * - flexible array members (entries[], indices[], sigset[]) hold as many elements as were captured, capped
 *   by the struct's count member (nent, nmsrs, nr, n, len, …; nr_<name> for fixed arrays such as
 *   kvm_xcrs.xcrs; the rule is src/kvm/abi/flex-count.ts, shared with the BPF loader) — a count larger than what was
 *   captured sets `_truncated`;
 * - padding-like members (pad…, padding…, reserved…, dummy, unused, rsvd) are left out when all zero (a
 *   non-zero one is kept: it is what makes the kernel answer EINVAL) and always inside a union that has
 *   other members; zero-size placeholders (__empty_*) are left out;
 * - named unions decode every remaining member over the same bytes, except where a sibling selects the
 *   member (kvm_irqchip.chip by chip_id, kvm_irq_routing_entry.u by type);
 * - bitfields decode to their value (kvm_ioapic_state's redirection entries);
 * - members not (fully) inside the captured bytes are left out and the top-level object gets
 *   `_truncated: true`.
 */
import type { Btf } from '../btf/index.js';
import type { BtfType } from '../btf/types.js';
import { bytesHex, hex64, s64Value, u64Value } from '../cdata/values.js';
import { countFor, isCountCandidate } from '../kvm/abi/flex-count.js';

export type ArgValue = number | string | boolean | ArgValue[] | { [k: string]: ArgValue };
export type ArgsObject = { [k: string]: ArgValue };

/** Decodes `len` captured bytes at `off` of `dv` as one struct. */
export type StructDecoder = (dv: DataView, off: number, len: number) => ArgsObject;

const PAD_NAME = /^_*(pad|padding|reserved|rsvd|dummy|unused)\d*$/;
const ADDR_NAME = /addr|address|base$|bitmap|_ptr$|^ptr$|^gpa$|^gva$|^hva$|^uaddr|^phys/;
/** Byte arrays up to this length decode as number arrays, longer ones as hex strings. */
const SMALL_BYTES = 16;
const MAX_DEPTH = 16;

/** Decode state shared down one decode call: where the captured bytes end, whether something was cut. */
interface Ctx {
  end: number;
  truncated: boolean;
}

/** Count members (offset relative to the record being compiled, size in bytes) by name. */
type CountMap = Map<string, { off: number; size: number }>;
/** Reads one value at absolute offset `at` (the caller checked it is captured). */
type ValueReader = (dv: DataView, at: number, ctx: Ctx) => ArgValue;
/** A compiled record: decodes the struct/union at `base` into a fresh object. */
type RecordFn = (dv: DataView, base: number, ctx: Ctx) => ArgsObject;

/**
 * Member selectors for named unions: struct tag → union member → (decoded siblings) → member to keep. The
 * numbers are the uapi #defines that say which member is live (linux/kvm.h).
 */
const UNION_SELECTORS: Record<string, Record<string, (parent: ArgsObject) => string | undefined>> = {
  kvm_irqchip: {
    // KVM_IRQCHIP_PIC_MASTER 0, KVM_IRQCHIP_PIC_SLAVE 1, KVM_IRQCHIP_IOAPIC 2
    chip: (p) => (p.chip_id === 0 || p.chip_id === 1 ? 'pic' : p.chip_id === 2 ? 'ioapic' : undefined),
  },
  kvm_irq_routing_entry: {
    // KVM_IRQ_ROUTING_IRQCHIP 1, _MSI 2, _S390_ADAPTER 3, _HV_SINT 4, _XEN_EVTCHN 5
    u: (p) => (['', 'irqchip', 'msi', 'adapter', 'hv_sint', 'xen_evtchn'] as const)[p.type as number] || undefined,
  },
};

function intReader(size: number, signed: boolean, asAddr: boolean): ValueReader {
  if (asAddr && size === 8) return (dv, at) => hex64(dv, at);
  switch (size) {
    case 1: return signed ? (dv, at) => dv.getInt8(at) : (dv, at) => dv.getUint8(at);
    case 2: return signed ? (dv, at) => dv.getInt16(at, true) : (dv, at) => dv.getUint16(at, true);
    case 4: return signed ? (dv, at) => dv.getInt32(at, true) : (dv, at) => dv.getUint32(at, true);
    case 8: return signed ? (dv, at) => s64Value(dv, at) : (dv, at) => u64Value(dv, at);
    default: return (dv, at) => bytesHex(dv, at, size); // __int128 and friends
  }
}

/** Bits [bitOffset, bitOffset + bits) of the record at `base`, little-endian, unsigned. */
function bitfieldReader(bitOffset: number, bits: number, signed: boolean): (dv: DataView, base: number) => number | string {
  const first = Math.floor(bitOffset / 8);
  const shift = bitOffset % 8;
  const nbytes = Math.ceil((shift + bits) / 8);
  if (bits <= 32) {
    return (dv, base) => {
      let v = 0;
      for (let i = nbytes - 1; i >= 0; i--) v = v * 256 + dv.getUint8(base + first + i);
      v = Math.floor(v / 2 ** shift) % 2 ** bits;
      return signed && v >= 2 ** (bits - 1) ? v - 2 ** bits : v;
    };
  }
  return (dv, base) => {
    let v = 0n;
    for (let i = nbytes - 1; i >= 0; i--) v = (v << 8n) | BigInt(dv.getUint8(base + first + i));
    v = (v >> BigInt(shift)) & ((1n << BigInt(bits)) - 1n);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `0x${v.toString(16)}`;
  };
}

function allZero(dv: DataView, at: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (dv.getUint8(at + i) !== 0) return false;
  return true;
}

/**
 * Compiles BTF records into decoders, once per type id; one instance per BTF. Each record becomes one
 * generated JavaScript function (new Function) that fills an object member by member with constant
 * property names and offsets: ≈7× faster than a closure per member, and what keeps per-record decoding
 * cheap. Only BTF-derived numbers and JSON-quoted member names go into the generated source.
 */
export class BtfArgsDecoder {
  private readonly byName = new Map<string, StructDecoder | null>();
  private readonly top = new Map<number, StructDecoder>();
  private readonly records = new Map<number, RecordFn>();
  private readonly compiling = new Set<number>();

  constructor(readonly btf: Btf) {}

  /** The decoder of struct/union `name` ("kvm_regs"), or undefined when the kernel's BTF lacks it. */
  forStruct(name: string): StructDecoder | undefined {
    let d = this.byName.get(name);
    if (d === undefined) {
      const layout = this.btf.struct(name);
      d = layout ? this.forTypeId(layout.id) : null;
      this.byName.set(name, d);
    }
    return d ?? undefined;
  }

  /** The decoder of the struct/union with BTF type id `id`. */
  forTypeId(id: number): StructDecoder {
    let d = this.top.get(id);
    if (!d) {
      const t = this.btf.resolve(id);
      if (t.kind !== 'struct' && t.kind !== 'union') throw new Error(`BTF type ${id} is a ${t.kind}, not a struct`);
      const rec = this.record(t.id, 0);
      d = (dv, off, len) => {
        const ctx: Ctx = { end: off + len, truncated: false };
        const out = rec(dv, off, ctx);
        if (ctx.truncated) out._truncated = true;
        return out;
      };
      this.top.set(id, d);
    }
    return d;
  }

  /** The compiled function of record `id` (named records cached; cycles are impossible in uapi structs). */
  private record(id: number, depth: number, outer?: CountMap): RecordFn {
    const cacheable = !outer || outer.size === 0;
    const cached = cacheable ? this.records.get(id) : undefined;
    if (cached) return cached;
    if (depth > MAX_DEPTH || this.compiling.has(id)) throw new Error(`BTF type ${id}: nesting too deep or cyclic`);
    this.compiling.add(id);
    try {
      const env: unknown[] = [];
      const body: string[] = ['const o = {};'];
      this.emitMembers(id, depth, outer ?? new Map(), 'b', body, env);
      body.push('return o;');
      // H: helpers and sub-decoders referenced by index from the generated code.
      const fn = new Function('H', `return function decode_${id}(dv, b, ctx) {\n${body.join('\n')}\n};`)(env) as RecordFn;
      if (cacheable) this.records.set(id, fn);
      return fn;
    } finally {
      this.compiling.delete(id);
    }
  }

  /** Emit statements decoding record `id`'s members at base expression `b` into `o`. */
  private emitMembers(id: number, depth: number, outer: CountMap, b: string, body: string[], env: unknown[]): void {
    const t = this.btf.resolve(id);
    if (t.kind !== 'struct' && t.kind !== 'union') return;
    const layout = this.btf.layoutOf(t.id);
    const isUnion = t.kind === 'union';
    const nonPad = layout.members.filter((m) => m.name !== '' && !PAD_NAME.test(m.name)).length;
    const selectors = UNION_SELECTORS[t.name] ?? {};
    const ref = (v: unknown): string => {
      env.push(v);
      return `H[${env.length - 1}]`;
    };
    const counts: CountMap = new Map(outer);
    const collect = (ms: typeof layout.members, base: number): void => {
      for (const m of ms) {
        if (m.name === '' && m.nested) collect(m.nested.members, base + m.offset);
        else if (isCountCandidate(m)) counts.set(m.name, { off: base + m.offset, size: m.size });
      }
    };
    collect(layout.members, 0);

    for (const m of layout.members) {
      const off = m.offset;
      const mt = this.btf.resolve(m.typeId);
      if (m.name === '') {
        // Anonymous struct/union: its members land in `o` (C-style access), with our counts shifted down.
        if (mt.kind !== 'struct' && mt.kind !== 'union') continue;
        const shifted: CountMap = new Map([...counts].map(([k, c]) => [k, { off: c.off - off, size: c.size }]));
        const nb = `b${depth + 1}_${off}`;
        body.push(`{ const ${nb} = ${b} + ${off};`);
        this.emitMembers(mt.id, depth + 1, shifted, nb, body, env);
        body.push('}');
        continue;
      }
      if (m.size === 0 && !(mt.kind === 'array' && mt.nelems === 0)) continue; // __empty_* placeholders
      const key = JSON.stringify(m.name);
      const isPad = PAD_NAME.test(m.name);
      if (isPad && isUnion && nonPad > 0) continue;
      const at = `${b} + ${off}`;

      if (m.bitSize > 0) {
        const read = bitfieldReader(m.bitOffset, m.bitSize, mt.kind === 'int' && mt.signed);
        const last = Math.ceil((m.bitOffset + m.bitSize) / 8);
        body.push(`if (${b} + ${last} <= ctx.end) o[${key}] = ${ref(read)}(dv, ${b}); else ctx.truncated = true;`);
        continue;
      }

      if (mt.kind === 'array') {
        const count = countFor(m.name, mt.nelems === 0, counts); // the shared rule (kvm/abi/flex-count.ts)
        const op = this.arrayReader(mt, m.name, count, isPad, depth);
        body.push(`{ const v = ${ref(op)}(dv, ${b}, ${off}, ctx); if (v !== undefined) o[${key}] = v; }`);
        continue;
      }

      if (mt.kind === 'struct' || mt.kind === 'union') {
        // Named nested record: decoded even when only partly captured (its own members check the bound).
        const sub = ref(this.record(mt.id, depth + 1));
        const sel = selectors[m.name];
        if (sel) {
          const pick = ref(sel);
          body.push(
            `if (${at} < ctx.end) { const u = ${sub}(dv, ${at}, ctx); const w = ${pick}(o);` +
              ` o[${key}] = w !== undefined && u[w] !== undefined ? { [w]: u[w] } : u; } else ctx.truncated = true;`,
          );
        } else {
          body.push(`if (${at} < ctx.end) o[${key}] = ${sub}(dv, ${at}, ctx); else ctx.truncated = true;`);
        }
        continue;
      }

      const expr = this.scalarExpr(mt, m.typeId, m.name, at, ref);
      const guard = isPad ? ` && !${ref(allZero)}(dv, ${at}, ${m.size})` : '';
      body.push(`if (${at} + ${m.size} <= ctx.end) { if (true${guard}) o[${key}] = ${expr}; } else ctx.truncated = true;`);
    }
  }

  /** Source of an expression reading a scalar member at `at`. */
  private scalarExpr(mt: BtfType, typeId: number, name: string, at: string, ref: (v: unknown) => string): string {
    if (mt.kind === 'ptr') return `${ref(hex64)}(dv, ${at})`;
    if (mt.kind === 'int' || mt.kind === 'enum' || mt.kind === 'enum64') {
      const signed = mt.signed;
      switch (mt.size) {
        case 1: return signed ? `dv.getInt8(${at})` : `dv.getUint8(${at})`;
        case 2: return `dv.get${signed ? 'Int' : 'Uint'}16(${at}, true)`;
        case 4: return `dv.get${signed ? 'Int' : 'Uint'}32(${at}, true)`;
        case 8:
          if (mt.kind === 'int' && ADDR_NAME.test(name)) return `${ref(hex64)}(dv, ${at})`;
          return `${ref(signed ? s64Value : u64Value)}(dv, ${at})`;
      }
    }
    return `${ref(bytesHex)}(dv, ${at}, ${this.btf.sizeOf(typeId)})`;
  }

  /** Element reader of an array's element type (nested arrays become arrays of arrays). */
  private elementReader(elemId: number, name: string, depth: number): { read: ValueReader; size: number; bytes: boolean } {
    const et = this.btf.resolve(elemId);
    const size = this.btf.sizeOf(elemId);
    if (et.kind === 'int' && size === 1) return { read: intReader(1, et.signed && !et.char, false), size, bytes: true };
    if (et.kind === 'struct' || et.kind === 'union') return { read: this.record(et.id, depth + 1), size, bytes: false };
    if (et.kind === 'array') {
      const sub = this.elementReader(et.type, name, depth + 1);
      const n = et.nelems;
      return {
        size,
        bytes: false,
        read: (dv, at, ctx) =>
          sub.bytes && n > SMALL_BYTES ? bytesHex(dv, at, n) : Array.from({ length: n }, (_, i) => sub.read(dv, at + i * sub.size, ctx)),
      };
    }
    if (et.kind === 'ptr') return { read: (dv, at) => hex64(dv, at), size, bytes: false };
    if (et.kind === 'int' || et.kind === 'enum' || et.kind === 'enum64') {
      return { read: intReader(size, et.signed, et.kind === 'int' && ADDR_NAME.test(name)), size, bytes: false };
    }
    return { read: (dv, at) => bytesHex(dv, at, size), size, bytes: false };
  }

  /**
   * Reader of an array member at `off` of the record at `base`: as many elements as were captured and the
   * count member allows; undefined when an all-zero padding array is to be left out.
   */
  private arrayReader(
    at: BtfType & { kind: 'array' },
    name: string,
    count: { off: number; size: number } | undefined,
    isPad: boolean,
    depth: number,
  ): (dv: DataView, base: number, off: number, ctx: Ctx) => ArgValue | undefined {
    const el = this.elementReader(at.type, name, depth);
    const nelems = at.nelems;
    const flexible = nelems === 0;
    const esize = el.size;
    return (dv, base, off, ctx) => {
      const start = base + off;
      if (start > ctx.end || (start === ctx.end && !flexible)) {
        ctx.truncated = true; // not captured at all
        return undefined;
      }
      let n = flexible ? Number.MAX_SAFE_INTEGER : nelems;
      let counted = false;
      if (count && base + count.off + count.size <= ctx.end) {
        const c = count.size === 1 ? dv.getUint8(base + count.off) : count.size === 2 ? dv.getUint16(base + count.off, true) : dv.getUint32(base + count.off, true);
        if (c < n) n = c;
        counted = true;
      }
      const fit = esize > 0 ? Math.max(0, Math.floor((ctx.end - start) / esize)) : 0;
      if (fit < n) {
        // A fixed array or a counted flexible one cut short is a truncation; an uncounted flexible array
        // simply ends where the capture ends.
        if (!flexible || counted) ctx.truncated = true;
        n = fit;
      }
      if (isPad && allZero(dv, start, n * esize)) return undefined;
      if (el.bytes && n > SMALL_BYTES) return bytesHex(dv, start, n);
      const arr: ArgValue[] = new Array(n);
      for (let i = 0; i < n; i++) arr[i] = el.read(dv, start + i * esize, ctx);
      return arr;
    };
  }
}
