/**
 * The variables of an opened object's data sections (.rodata, .bss) with their offsets, from the object's
 * BTF as libbpf holds it after bpf_object__open.
 *
 * Why libbpf's copy and not src/btf's reader of the ELF .BTF: clang writes DATASEC records with size 0
 * and every variable at offset 0; libbpf fills in the real section size and offsets from the ELF symbol
 * table at open time (btf_fixup_datasec). On bpf/prebuilt/kvm_trace.bpf.o the raw .BTF says offset 0 for
 * all six .rodata variables while libbpf says 0, 4, 5, 6, 24, 32 (test/ffi-libbpf.test.ts shows both),
 * so only the opened object's BTF can place the rodata filters.
 */
import koffi from 'koffi';
import { bindLibbpf, check, ptr, type BpfObjectPtr } from './lib.js';

const c = bindLibbpf({
  object_btf: 'void *bpf_object__btf(void *obj)',
  btf_find: 'int btf__find_by_name_kind(void *btf, const char *name, uint32_t kind)',
  btf_type: 'void *btf__type_by_id(void *btf, uint32_t id)',
  btf_name: 'const char *btf__name_by_offset(void *btf, uint32_t offset)',
});

const BTF_KIND_VAR = 14;
const BTF_KIND_DATASEC = 15;

export interface DatasecVar {
  name: string;
  offset: number;
  size: number;
}

/**
 * The variables of a data section (".rodata", ".bss") of an opened object, from its BTF DATASEC: name,
 * byte offset in the section image, size. The BTF type records are read in their uapi layout
 * (include/uapi/linux/btf.h: btf_type is 12 bytes, a DATASEC is followed by vlen btf_var_secinfo of 12).
 */
export function datasecVars(obj: BpfObjectPtr, section: string): DatasecVar[] {
  const btf = ptr<bigint>('bpf_object__btf', c().object_btf(obj));
  const id = check(`btf__find_by_name_kind ${section}`, c().btf_find(btf, section, BTF_KIND_DATASEC) as number);
  const t = ptr<bigint>('btf__type_by_id', c().btf_type(btf, id));
  const info = koffi.decode.uint32(t + 4n) as number;
  const vlen = info & 0xffff;
  const out: DatasecVar[] = [];
  for (let i = 0; i < vlen; i++) {
    const si = t + 12n + BigInt(i * 12);
    const varType = koffi.decode.uint32(si) as number;
    const offset = koffi.decode.uint32(si + 4n) as number;
    const size = koffi.decode.uint32(si + 8n) as number;
    const v = ptr<bigint>('btf__type_by_id', c().btf_type(btf, varType));
    const kind = ((koffi.decode.uint32(v + 4n) as number) >>> 24) & 0x1f;
    if (kind !== BTF_KIND_VAR) continue;
    const name = c().btf_name(btf, koffi.decode.uint32(v) as number) as string;
    out.push({ name, offset, size });
  }
  return out;
}
