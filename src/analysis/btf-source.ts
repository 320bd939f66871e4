/**
 * Adapts the kernel BTF reader (src/btf) to the analysis TypeSource: struct layouts by tag, and size and
 * natural alignment of any named type — struct tags, typedefs ("__u64", "sigset_t") and base types, with
 * the header's spellings mapped to BTF's ("unsigned long" is "long unsigned int" in BTF).
 */
import { Btf } from '../btf/index.js';
import { isModuleBtfPath, kernelBtf, VMLINUX_BTF } from '../btf/kernel.js';
import type { TypeSize, TypeSource } from './types.js';

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
