/**
 * kvm-trace's BTF reader on the running kernel's real BTF, checked against bpftool's: where KVM is a
 * module its types are split BTF (/sys/kernel/btf/kvm over vmlinux), and for each KVM struct kvm-trace's
 * merged view (src/btf/kernel.ts) must give the same type id (split ids continue the base's), size and
 * member offsets as `bpftool -B vmlinux btf dump file kvm`. Also the checklist's kernel types.
 */
import { execFileSync } from 'node:child_process';
import { Btf } from '../../src/btf/index.js';
import { kernelBtf, KVM_MODULE_BTF, missingKernelType, VMLINUX_BTF } from '../../src/btf/kernel.js';
import { btfTypeSource, type TypeSource } from '../../src/btf/type-source.js';
import { ioctlByName } from '../../src/kvm/abi/ioctl-table.js';
import type { IoctlLookup } from '../../src/analysis/flags.js';

/** Structs the decoder, the copy rules and the kvm_run map read. */
export const KVM_STRUCTS = [
  'kvm_run', 'kvm_regs', 'kvm_sregs', 'kvm_fpu', 'kvm_msrs', 'kvm_msr_entry', 'kvm_cpuid2', 'kvm_cpuid_entry2',
  'kvm_userspace_memory_region', 'kvm_signal_mask', 'kvm_vcpu_events', 'kvm_debugregs', 'kvm_irq_routing',
];

interface BpftoolType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  members?: Array<{ name: string; bits_offset: number }>;
}

export function kernelTypes(): { types?: TypeSource; lookup: IoctlLookup; error?: string } {
  try {
    return { types: btfTypeSource(kernelBtf()), lookup: ioctlByName };
  } catch (err) {
    return { lookup: ioctlByName, error: (err as Error).message };
  }
}

function bpftoolDump(args: string[]): BpftoolType[] {
  try {
    const json = execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'] });
    return (JSON.parse(json) as { types: BpftoolType[] }).types;
  } catch (err) {
    throw new Error(`bpftool ${args.join(' ')} failed: ${(err as Error).message.split('\n')[0]}`);
  }
}

/** Differences between kvm-trace's reading and bpftool's, as one line ('ok: …' when none). */
export function btfCrossCheck(moduleBtf: boolean): string {
  let btf;
  try {
    btf = kernelBtf();
  } catch (err) {
    return (err as Error).message;
  }
  // bpftool's split dump lists only the module's own types; those deduplicated into vmlinux (kvm_run on
  // some kernels) are in the base's dump, read only when needed (it is large).
  const dumps: Array<() => BpftoolType[]> = [];
  if (moduleBtf) dumps.push(() => bpftoolDump(['-B', VMLINUX_BTF, 'btf', 'dump', 'file', KVM_MODULE_BTF]));
  dumps.push(() => bpftoolDump(['btf', 'dump', 'file', VMLINUX_BTF]));
  const loaded: BpftoolType[][] = [];
  const find = (name: string): BpftoolType | undefined => {
    for (let i = 0; i < dumps.length; i++) {
      loaded[i] ??= dumps[i]();
      const t = loaded[i].find((x) => x.kind === 'STRUCT' && x.name === name);
      if (t) return t;
    }
    return undefined;
  };
  const problems: string[] = [];
  for (const name of KVM_STRUCTS) {
    let theirs: BpftoolType | undefined;
    try {
      theirs = find(name);
    } catch (err) {
      return (err as Error).message;
    }
    const ours = btf.struct(name);
    if (!theirs && !ours) {
      problems.push(missingKernelType(`struct ${name}`));
      continue;
    }
    if (!theirs || !ours) {
      problems.push(`struct ${name}: ${ours ? `kvm-trace finds it (id ${ours.id}), bpftool does not` : `bpftool has it (id ${theirs!.id}), kvm-trace does not`}`);
      continue;
    }
    if (ours.id !== theirs.id || ours.size !== theirs.size) {
      problems.push(`struct ${name}: kvm-trace id ${ours.id} size ${ours.size}, bpftool id ${theirs.id} size ${theirs.size}`);
      continue;
    }
    const a = ours.members.map((m) => `${m.name}@${m.bitOffset}`).join(' ');
    const b = (theirs.members ?? []).map((m) => `${m.name === '(anon)' ? '' : m.name}@${m.bits_offset}`).join(' ');
    if (a !== b) problems.push(`struct ${name}: members differ (kvm-trace: ${a}; bpftool: ${b})`);
  }
  if (problems.length) return `${problems.length} of ${KVM_STRUCTS.length} structs differ: ${problems[0]}`;
  const baseCount = Btf.vmlinux(VMLINUX_BTF).count;
  const fromModule = KVM_STRUCTS.filter((n) => (btf.struct(n)?.id ?? 0) >= baseCount).length;
  if (moduleBtf && fromModule === 0) return `no KVM struct was read from ${KVM_MODULE_BTF}: the split BTF path was not exercised`;
  return `ok: ${KVM_STRUCTS.length} KVM structs = bpftool's${moduleBtf ? ` (${fromModule} from ${KVM_MODULE_BTF})` : ''}`;
}
