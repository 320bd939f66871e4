/**
 * Feature probes and raw loads: libbpf's probe helpers, bpf_prog_load / bpf_link_create without an object
 * (the smallest real operation a probe can try), vmlinux BTF ids, and the kernel's id lists of programs,
 * maps and links (for the teardown checks).
 */
import koffi from 'koffi';
import { bindLibbpf, check } from './lib.js';

/** uapi enum bpf_prog_type values used here (include/uapi/linux/bpf.h, a stable ABI). */
export const BPF_PROG_TYPE = { KPROBE: 2, TRACEPOINT: 5, RAW_TRACEPOINT: 17, TRACING: 26 } as const;
/** uapi enum bpf_attach_type values used here. */
export const BPF_ATTACH_TYPE = { TRACE_RAW_TP: 23, TRACE_FENTRY: 24, TRACE_FEXIT: 25 } as const;
/** uapi enum bpf_map_type values used here. */
export const BPF_MAP_TYPE = { RINGBUF: 27, TASK_STORAGE: 29 } as const;

const ProgLoadOpts = koffi.struct('kt_bpf_prog_load_opts', {
  sz: 'size_t',
  attempts: 'int',
  expected_attach_type: 'uint32_t',
  prog_btf_fd: 'uint32_t',
  prog_flags: 'uint32_t',
  prog_ifindex: 'uint32_t',
  kern_version: 'uint32_t',
  attach_btf_id: 'uint32_t',
  attach_prog_fd: 'uint32_t',
  attach_btf_obj_fd: 'uint32_t',
  fd_array: 'void *',
  func_info: 'void *',
  func_info_cnt: 'uint32_t',
  func_info_rec_size: 'uint32_t',
  line_info: 'void *',
  line_info_cnt: 'uint32_t',
  line_info_rec_size: 'uint32_t',
  log_level: 'uint32_t',
  log_size: 'uint32_t',
  log_buf: 'void *',
});

const c = bindLibbpf({
  probe_prog_type: 'int libbpf_probe_bpf_prog_type(int prog_type, void *opts)',
  probe_map_type: 'int libbpf_probe_bpf_map_type(int map_type, void *opts)',
  probe_helper: 'int libbpf_probe_bpf_helper(int prog_type, int helper_id, void *opts)',
  prog_load:
    'int bpf_prog_load(int prog_type, const char *name, const char *license, void *insns, size_t insn_cnt, kt_bpf_prog_load_opts *opts)',
  link_create: 'int bpf_link_create(int prog_fd, int target_fd, int attach_type, void *opts)',
  find_vmlinux_btf_id: 'int libbpf_find_vmlinux_btf_id(const char *name, int attach_type)',
  obj_get_info: 'int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *info_len)',
  prog_next_id: 'int bpf_prog_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)',
  map_next_id: 'int bpf_map_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)',
  link_next_id: 'int bpf_link_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)',
});

/** libbpf_probe_bpf_prog_type: 1 supported, 0 not, <0 -errno (inconclusive). */
export function probeProgType(type: number): number {
  return c().probe_prog_type(type, null) as number;
}

/** libbpf_probe_bpf_map_type: 1 supported, 0 not, <0 -errno (inconclusive). */
export function probeMapType(type: number): number {
  return c().probe_map_type(type, null) as number;
}

/** libbpf_probe_bpf_helper: 1 the program type may call the helper, 0 not, <0 -errno. */
export function probeHelper(progType: number, helperId: number): number {
  return c().probe_helper(progType, helperId, null) as number;
}

export interface ProgLoadOptions {
  expectedAttachType?: number;
  attachBtfId?: number;
  /** Verifier log buffer (log level 1 when given). */
  log?: Buffer;
}

/** bpf_prog_load: the new program's fd, or -errno (not thrown: probes classify the errno). */
export function progLoadRaw(type: number, name: string, insns: Buffer, opts: ProgLoadOptions = {}): number {
  const o = {
    sz: koffi.sizeof(ProgLoadOpts),
    attempts: 0,
    expected_attach_type: opts.expectedAttachType ?? 0,
    prog_btf_fd: 0,
    prog_flags: 0,
    prog_ifindex: 0,
    kern_version: 0,
    attach_btf_id: opts.attachBtfId ?? 0,
    attach_prog_fd: 0,
    attach_btf_obj_fd: 0,
    fd_array: null,
    func_info: null,
    func_info_cnt: 0,
    func_info_rec_size: 0,
    line_info: null,
    line_info_cnt: 0,
    line_info_rec_size: 0,
    log_level: opts.log ? 1 : 0,
    log_size: opts.log ? opts.log.length : 0,
    log_buf: opts.log ?? null,
  };
  return c().prog_load(type, name, 'GPL', insns, insns.length / 8, o) as number;
}

/** bpf_link_create without options (fentry/fexit/tp_btf attach): the link fd, or -errno. */
export function linkCreateRaw(progFdValue: number, targetFd: number, attachType: number): number {
  return c().link_create(progFdValue, targetFd, attachType, null) as number;
}

/** BTF type id of a vmlinux function for an attach type (fentry …), or -errno. */
export function findVmlinuxBtfId(name: string, attachType: number): number {
  return c().find_vmlinux_btf_id(name, attachType) as number;
}

/**
 * Kernel id of a BPF program, map or link fd (bpf_{prog,map,link}_info all start with u32 type, u32 id).
 */
export function bpfObjectId(fd: number): number {
  const info = Buffer.alloc(16);
  const len: [number] = [info.length];
  check('bpf_obj_get_info_by_fd', c().obj_get_info(fd, info, len) as number);
  return info.readUInt32LE(4);
}

export type BpfIdKind = 'prog' | 'map' | 'link';

/** Every id of that kind the kernel currently holds (BPF_*_GET_NEXT_ID walk; needs CAP_SYS_ADMIN). */
export function kernelBpfIds(kind: BpfIdKind): number[] {
  const fn = kind === 'prog' ? c().prog_next_id : kind === 'map' ? c().map_next_id : c().link_next_id;
  const ids: number[] = [];
  let id = 0;
  for (;;) {
    const next: [number] = [0];
    const r = fn(id, next) as number;
    if (r === -2) return ids; // ENOENT: end of the list
    check(`bpf_${kind}_get_next_id`, r);
    ids.push(next[0]);
    id = next[0];
  }
}
