/**
 * The ABI check behind `kvm-trace abi --check`: does what user space encodes and declares agree with the
 * running kernel's own types (BTF)?
 *  (a) every ioctl of the table: the size encoded in its request number vs the kernel's sizeof(argument);
 *      a difference means that ioctl number does not exist in this kernel (ENOTTY);
 *  (b) struct definitions (the project's src/kvm/abi/structs.ts, or any a caller passes): size and every
 *      member's offset and size vs BTF; a difference means fields land in the wrong place.
 * Library functions taking the definitions as parameters, so a test can feed a wrong one.
 */
import type { Btf } from '../../btf/index.js';
import { flattenLayout, type MemberKind } from '../../btf/layout.js';
import { flatten, type RecordType } from '../../cdata/layout.js';
import type { IoctlDef } from '../../kvm/abi/ioctl-table.js';

export type AbiProblemKind = 'ioctl-size' | 'struct-size' | 'member-offset' | 'member-size' | 'member-missing';

export interface AbiProblem {
  kind: AbiProblemKind;
  /** The ioctl or struct the problem is about ("KVM_GET_REGS", "kvm_regs"). */
  subject: string;
  message: string;
}

export interface AbiCheckResult {
  problems: AbiProblem[];
  /** Things checked and found consistent only by renaming, or not checkable (not in BTF). */
  notes: string[];
  checked: { ioctls: number; structs: number; members: number };
  /** Argument types / struct tags the kernel's BTF does not have (other architectures, config off). */
  notInBtf: string[];
}

interface BtfPath {
  offset: number;
  size: number;
  kind: MemberKind;
}

/** Header spellings of base types and BTF's ("unsigned long" is "long unsigned int" in BTF). */
const BTF_SPELLING: Record<string, string> = {
  'unsigned long': 'long unsigned int',
  'unsigned long long': 'long long unsigned int',
  long: 'long int',
  unsigned: 'unsigned int',
};

/** sizeof a header type name in BTF ("struct kvm_regs", "__u64", "unsigned long", "int"), or undefined. */
export function btfSizeOfCType(btf: Btf, cType: string): number | undefined {
  const st = /^(struct|union)\s+(\w+)$/.exec(cType);
  if (st) return btf.struct(cType)?.size;
  const name = BTF_SPELLING[cType] ?? cType;
  const t = btf.findByName(name, 'typedef') ?? btf.findByName(name, 'int');
  if (!t) return undefined;
  try {
    return btf.sizeOf(t.id);
  } catch {
    return undefined;
  }
}

/** (a) Encoded argument size of every ioctl with an argument vs the kernel's sizeof. */
export function checkIoctlSizes(btf: Btf, ioctls: readonly IoctlDef[]): AbiCheckResult {
  const r: AbiCheckResult = { problems: [], notes: [], checked: { ioctls: 0, structs: 0, members: 0 }, notInBtf: [] };
  const missing = new Set<string>();
  for (const d of ioctls) {
    if (!d.argType) continue;
    const kernel = btfSizeOfCType(btf, d.argType);
    if (kernel === undefined) {
      missing.add(d.argType);
      continue;
    }
    r.checked.ioctls++;
    if (kernel !== d.size) {
      r.problems.push({
        kind: 'ioctl-size',
        subject: d.name,
        message: `${d.name} encodes ${d.size} bytes but the kernel's ${d.argType} is ${kernel}: this request number does not exist in this kernel (ENOTTY)`,
      });
    }
  }
  r.notInBtf = [...missing];
  return r;
}

/**
 * Kernel builds sometimes rename a uapi member (kvm_run.immediate_exit is immediate_exit__unsafe in the
 * kernel's own BTF): accept a BTF member at the same place whose name is the declared one plus "__suffix".
 */
function renamed(path: string, btfPaths: Map<string, BtfPath>): string | undefined {
  for (const p of btfPaths.keys()) if (p.startsWith(`${path}__`) && !p.slice(path.length + 2).includes('.')) return p;
  return undefined;
}

/**
 * Some uapi members are hidden from kernel builds (`#ifndef __KERNEL__`), e.g. kvm_run.hypercall.longmode,
 * which shares its bytes with the kernel's hypercall.flags. A declared member with no kernel member of its
 * name is still consistent when its bytes lie within one kernel member with the same parent path.
 */
function coveringMember(path: string, offset: number, size: number, btfPaths: Map<string, BtfPath>): string | undefined {
  const parent = path.includes('.') ? path.slice(0, path.lastIndexOf('.')) : '';
  for (const [p, k] of btfPaths) {
    const pParent = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '';
    // Only a scalar can stand for it: an array or record (padding[256]) would cover anything.
    const scalar = k.kind === 'int' || k.kind === 'enum' || k.kind === 'ptr' || k.kind === 'float';
    if (scalar && pParent === parent && k.offset <= offset && offset + size <= k.offset + k.size) return p;
  }
  return undefined;
}

/** (b) Each definition's size and every member's offset and size vs the kernel's struct of the same tag. */
export function checkStructDefs(btf: Btf, defs: Readonly<Record<string, RecordType>>): AbiCheckResult {
  const r: AbiCheckResult = { problems: [], notes: [], checked: { ioctls: 0, structs: 0, members: 0 }, notInBtf: [] };
  for (const [tag, def] of Object.entries(defs)) {
    const kernel = btf.struct(`${def.kind} ${tag}`) ?? btf.struct(tag);
    if (!kernel) {
      r.notInBtf.push(`${def.kind} ${tag}`);
      continue;
    }
    r.checked.structs++;
    const what = `${def.kind} ${tag}`;
    if (def.size !== kernel.size) {
      r.problems.push({ kind: 'struct-size', subject: tag, message: `${what}: declared ${def.size} bytes, kernel's is ${kernel.size}` });
    }
    const btfPaths = new Map<string, BtfPath>(flattenLayout(kernel).map((m) => [m.path, { offset: m.offset, size: m.size, kind: m.member.kind }]));
    for (const m of flatten(def)) {
      const path = m.path.split('.').filter(Boolean).join('.');
      if (path === '' || m.path.endsWith('.')) continue; // an anonymous record itself: its members are checked
      r.checked.members++;
      let k = btfPaths.get(path);
      if (!k) {
        const alt = renamed(path, btfPaths);
        if (alt) {
          k = btfPaths.get(alt)!;
          r.notes.push(`${what}.${path} is called ${alt} in the kernel's BTF`);
        }
      }
      if (!k) {
        const cover = coveringMember(path, m.offset, m.size, btfPaths);
        if (cover) {
          r.notes.push(`${what}.${path} (offset ${m.offset}, ${m.size} bytes) is not in the kernel's BTF; ` +
            `its bytes lie inside the kernel's ${cover} (a name only user space sees, like #ifndef __KERNEL__ members)`);
          continue;
        }
        r.problems.push({ kind: 'member-missing', subject: tag, message: `${what}.${path}: the kernel's struct has no such member` });
        continue;
      }
      if (k.offset !== m.offset) {
        r.problems.push({ kind: 'member-offset', subject: tag, message: `${what}.${path}: declared at offset ${m.offset}, kernel's is at ${k.offset}` });
      } else if (k.size !== m.size) {
        r.problems.push({ kind: 'member-size', subject: tag, message: `${what}.${path}: declared ${m.size} bytes, kernel's is ${k.size}` });
      }
    }
  }
  return r;
}

/** Both checks in one result. */
export function abiCheck(btf: Btf, ioctls: readonly IoctlDef[], defs: Readonly<Record<string, RecordType>>): AbiCheckResult {
  const a = checkIoctlSizes(btf, ioctls);
  const b = checkStructDefs(btf, defs);
  return {
    problems: [...a.problems, ...b.problems],
    notes: [...a.notes, ...b.notes],
    checked: { ioctls: a.checked.ioctls, structs: b.checked.structs, members: b.checked.members },
    notInBtf: [...a.notInBtf, ...b.notInBtf],
  };
}
