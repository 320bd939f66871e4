/**
 * Kernel types by the names a C header spells them, for code that reasons about what the kernel copies
 * (src/kvm/abi/copy-rules.ts, the buffer flags, the kvm_run map): struct layouts by tag, and size and
 * natural alignment of any named type — struct tags, typedefs ("__u64", "sigset_t") and base types, with
 * the header's spellings mapped to BTF's ("unsigned long" is "long unsigned int" in BTF). Results are
 * cached per name.
 */
import { Btf } from './index.js';
import { isModuleBtfPath, kernelBtf, VMLINUX_BTF } from './kernel.js';
import type { StructLayout } from './layout.js';

/** Size and natural alignment of a type. */
export interface TypeSize {
  size: number;
  align: number;
}

/** Where kernel type layouts come from: the running kernel's BTF in production. */
export interface TypeSource {
  /** struct or union by tag name ("kvm_regs"), typedefs followed. */
  struct(name: string): StructLayout | undefined;
  /** Any named type: a struct/union tag, a typedef ("__u64", "sigset_t") or a base type ("long unsigned int"). */
  type(name: string): TypeSize | undefined;
}

const BTF_SPELLING: Record<string, string> = {
  'unsigned long': 'long unsigned int',
  'unsigned long long': 'long long unsigned int',
  long: 'long int',
  'unsigned short': 'short unsigned int',
  unsigned: 'unsigned int',
};

export function btfTypeSource(btf: Btf): TypeSource {
  const sizes = new Map<string, TypeSize | undefined>();
  return {
    struct: (name) => btf.struct(name),
    type(name) {
      if (sizes.has(name)) return sizes.get(name);
      let out: TypeSize | undefined;
      const s = btf.struct(name);
      if (s) out = { size: s.size, align: s.align };
      else {
        const bare = BTF_SPELLING[name] ?? name;
        for (const kind of ['typedef', 'int', 'enum', 'float'] as const) {
          const t = btf.findByName(bare, kind);
          if (!t) continue;
          try {
            out = { size: btf.sizeOf(t.id), align: btf.alignOf(t.id) };
          } catch {
            out = undefined;
          }
          if (out) break;
        }
      }
      sizes.set(name, out);
      return out;
    },
  };
}

/**
 * The running kernel's types (vmlinux + kvm's module BTF, src/btf/kernel.ts), or those of the BTF file at
 * `path` (a module's /sys/kernel/btf/NAME is read split over vmlinux); undefined with the reason when the
 * BTF cannot be read.
 */
export function kernelTypeSource(path?: string): { types?: TypeSource; error?: string } {
  try {
    if (path === undefined || path === VMLINUX_BTF) return { types: btfTypeSource(kernelBtf()) };
    if (isModuleBtfPath(path)) return { types: btfTypeSource(kernelBtf({ kvm: path })) };
    return { types: btfTypeSource(Btf.vmlinux(path)) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}
