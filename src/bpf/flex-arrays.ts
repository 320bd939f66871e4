/**
 * The "flex_arrays" map of the BPF object: for every KVM ioctl whose argument struct ends in a flexible
 * array (kvm_msrs.entries[], kvm_cpuid2.entries[], kvm_msr_list.indices[], kvm_irq_routing.entries[],
 * kvm_signal_mask.sigset[], kvm_pmu_event_filter.events[], …), where its element count sits and how big an
 * element is, so the kernel side reads the entries and not only the _IOC_SIZE header (struct kt_flex_array
 * in bpf/kvm_trace.h).
 *
 * Nothing here is typed in: the ioctls and their argument structs come from the generated table, layouts
 * from the running kernel's BTF, the count member from the decoder's own rule (src/kvm/abi/flex-count.ts, so
 * the decoder caps the array by the same member the kernel side sized the read by), and when the entries
 * cross (in at enter, out at exit, or both) from src/kvm/abi/copy-rules.ts, which encodes what each
 * handler really copies: asked about a call with one element, its derived copies that reach into the array
 * say which directions carry entries. The map value is encoded with offsets from the BPF object's BTF.
 */
import type { Btf, StructLayout } from '../btf/index.js';
import { IOCTLS, ioctlByCmd, type IoctlDef } from '../kvm/abi/ioctl-table.js';
import { btfTypeSource, type TypeSource } from '../btf/type-source.js';
import { deriveCopies } from '../kvm/abi/copy-rules.js';
import { flexibleArrayOf, type FlexibleArray } from '../kvm/abi/flex-count.js';

/** One map entry: ioctl `name` (request `cmd`) has flexible array `array` counted by `count`. */
export interface FlexArrayRule {
  name: string;
  cmd: number;
  argStruct: string;
  array: FlexibleArray;
  /** The kernel copies the entries from the user (read at enter). */
  enter: boolean;
  /** The kernel copies the entries to the user (read at exit of a successful call). */
  exit: boolean;
}

/** kt_flex_array fields are __u16 / __u8: a layout beyond them cannot be described (and is not captured). */
const U16_MAX = 0xffff;
/** A user address for the what-is-copied question: any non-NULL value works, the rules only add offsets. */
const PROBE_ARG = 0x10000000n;

/**
 * Directions in which the handler of `def` copies elements of `fa` (one element asked for): a derived copy
 * inside the argument that reaches past the header into the array.
 */
function entryDirections(def: IoctlDef, fa: FlexibleArray, types: TypeSource): { enter: boolean; exit: boolean } {
  const copies = deriveCopies(
    {
      name: def.name,
      pid: 0,
      vm: null,
      fd_kind: def.fdKinds[0] ?? 'unknown',
      dir: def.dir,
      size: def.size,
      arg: `0x${PROBE_ARG.toString(16)}`,
      ret: 0,
      args: { [fa.count.name]: 1 },
    },
    { types, ioctl: def },
  );
  const into = copies.filter(
    (c) => c.len !== null && c.addr >= PROBE_ARG && c.addr <= PROBE_ARG + BigInt(fa.offset) && c.addr + BigInt(c.len) > PROBE_ARG + BigInt(fa.offset),
  );
  return { enter: into.some((c) => c.dir === 'from_user'), exit: into.some((c) => c.dir === 'to_user') };
}

/**
 * Every ioctl of the table (canonical name per request number) whose argument ends in a counted flexible
 * array that its handler copies, per the running kernel's BTF. Entries are read at enter only for numbers
 * with the write bit (the header is captured there) and at exit only for ones with the read bit.
 */
export function flexArrayRules(btf: Btf, types: TypeSource = btfTypeSource(btf)): FlexArrayRule[] {
  const rules: FlexArrayRule[] = [];
  for (const def of IOCTLS) {
    if (!def.argStruct || ioctlByCmd(def.cmd) !== def) continue;
    const layout = btf.struct(def.argStruct);
    const fa = layout && flexibleArrayOf(layout);
    if (!fa) continue;
    // The count must lie inside the fixed bytes the number encodes (they are what is read first).
    if (fa.count.offset + fa.count.size > def.size || fa.offset > U16_MAX || fa.elemSize > U16_MAX) continue;
    const d = entryDirections(def, fa, types);
    const enter = d.enter && (def.dir === 'write' || def.dir === 'readwrite');
    const exit = d.exit && (def.dir === 'read' || def.dir === 'readwrite');
    if (enter || exit) rules.push({ name: def.name, cmd: def.cmd, argStruct: def.argStruct, array: fa, enter, exit });
  }
  return rules;
}

/** Encodes rules as the map's keys and values, laid out by struct kt_flex_array / enum kt_flex_when of `objBtf`. */
export class FlexArrayEncoder {
  readonly valueSize: number;
  readonly #fields: Map<string, { offset: number; size: number }>;
  readonly #enter: number;
  readonly #exit: number;

  constructor(objBtf: Btf) {
    const s: StructLayout | undefined = objBtf.struct('kt_flex_array');
    const when = objBtf.findByName('kt_flex_when', 'enum');
    if (!s || !when || when.kind !== 'enum') throw new Error('BPF object has no struct kt_flex_array / enum kt_flex_when (stale object?)');
    this.valueSize = s.size;
    this.#fields = new Map(s.members.map((m) => [m.name, { offset: m.offset, size: m.size }]));
    const value = (n: string): number => {
      const v = when.values.find((e) => e.name === n);
      if (!v) throw new Error(`BPF object's enum kt_flex_when has no ${n}`);
      return Number(v.value);
    };
    this.#enter = value('KT_FLEX_ENTER');
    this.#exit = value('KT_FLEX_EXIT');
  }

  key(rule: FlexArrayRule): Buffer {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(rule.cmd >>> 0);
    return k;
  }

  value(rule: FlexArrayRule): Buffer {
    const v = Buffer.alloc(this.valueSize);
    const put = (name: string, n: number): void => {
      const f = this.#fields.get(name);
      if (!f) throw new Error(`BPF object's struct kt_flex_array has no member ${name}`);
      if (n < 0 || n >= 2 ** (8 * f.size)) throw new RangeError(`kt_flex_array.${name} = ${n} does not fit ${f.size} bytes (${rule.name})`);
      v.writeUIntLE(n, f.offset, f.size);
    };
    put('hdr_size', rule.array.offset);
    put('entry_size', rule.array.elemSize);
    put('count_off', rule.array.count.offset);
    put('count_size', rule.array.count.size);
    put('when', (rule.enter ? this.#enter : 0) | (rule.exit ? this.#exit : 0));
    return v;
  }
}
