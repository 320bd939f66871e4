/**
 * The libbpf half of the koffi boundary: libbpf.so.1 (Debian 12 ships 1.1.2) bindings for the object
 * lifecycle (open, size maps, set rodata, toggle autoload, load, attach, destroy), small feature probes,
 * the kernel's id lists, and a ring-buffer drain through libbpf's callback API (tests and fallbacks; the
 * fast consumer maps the ring itself, src/ringbuf/).
 *
 * Error convention of libbpf 1.x: pointer-returning calls give NULL and set errno; int-returning calls give
 * -errno. Both become SyscallError here (op = the libbpf call). Handles are branded bigints so a map pointer
 * cannot be passed where a program is expected; koffi does not check pointers, this typing does.
 *
 * libbpf's log hook receives a va_list; it is formatted with libc's vasprintf (taking the va_list as
 * `void *`, which is what va_list decays to on x86_64) and handed to one JS handler (setLibbpfLogger).
 */
import koffi, { type LibraryHandle } from 'koffi';
import { SyscallError } from './errors.js';

export type BpfObjectPtr = bigint & { readonly __brand: 'bpf_object' };
export type BpfProgramPtr = bigint & { readonly __brand: 'bpf_program' };
export type BpfMapPtr = bigint & { readonly __brand: 'bpf_map' };
export type BpfLinkPtr = bigint & { readonly __brand: 'bpf_link' };
export type RingBufferPtr = bigint & { readonly __brand: 'ring_buffer' };

/** uapi enum bpf_prog_type values used here (include/uapi/linux/bpf.h, a stable ABI). */
export const BPF_PROG_TYPE = { KPROBE: 2, TRACEPOINT: 5, RAW_TRACEPOINT: 17, TRACING: 26 } as const;
/** uapi enum bpf_attach_type values used here. */
export const BPF_ATTACH_TYPE = { TRACE_RAW_TP: 23, TRACE_FENTRY: 24, TRACE_FEXIT: 25 } as const;
/** uapi enum bpf_map_type values used here. */
export const BPF_MAP_TYPE = { RINGBUF: 27, TASK_STORAGE: 29 } as const;

export const enum LibbpfLogLevel {
  Warn = 0,
  Info = 1,
  Debug = 2,
}

let lib: LibraryHandle | undefined;
let loadError: Error | undefined;
try {
  lib = koffi.load('libbpf.so.1');
} catch (err) {
  loadError = err as Error;
}

/** Why libbpf.so.1 could not be loaded, or undefined when it is available. */
export function libbpfUnavailable(): string | undefined {
  return loadError ? `libbpf.so.1 is missing: apt-get install libbpf1 (${loadError.message.split('\n')[0]})` : undefined;
}

function need(): LibraryHandle {
  if (!lib) throw new Error(libbpfUnavailable());
  return lib;
}

const libc = koffi.load('libc.so.6');
const c_vasprintf = libc.func('int vasprintf(_Out_ void **strp, void *fmt, void *ap)');
const c_free = libc.func('void free(void *p)');

const PrintFn = koffi.proto('int kt_libbpf_print_fn(int level, void *fmt, void *ap)');
const SampleFn = koffi.proto('int kt_ring_buffer_sample_fn(void *ctx, void *data, size_t size)');

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

/** A bound libbpf function; results are narrowed with `as` at each wrapper. */
type Fn = (...args: unknown[]) => unknown;
interface Fns {
  open_file: Fn;
  obj_load: Fn;
  obj_close: Fn;
  next_program: Fn;
  find_program: Fn;
  prog_name: Fn;
  prog_section: Fn;
  prog_set_autoload: Fn;
  prog_autoload: Fn;
  prog_fd: Fn;
  prog_type: Fn;
  prog_attach: Fn;
  map_next_key: Fn;
  link_destroy: Fn;
  link_fd: Fn;
  find_map: Fn;
  map_fd: Fn;
  map_set_max_entries: Fn;
  map_max_entries: Fn;
  map_set_autocreate: Fn;
  map_initial_value: Fn;
  map_set_initial_value: Fn;
  map_lookup: Fn;
  map_update: Fn;
  num_possible_cpus: Fn;
  probe_prog_type: Fn;
  probe_map_type: Fn;
  probe_helper: Fn;
  prog_load: Fn;
  find_vmlinux_btf_id: Fn;
  obj_get_info: Fn;
  prog_next_id: Fn;
  map_next_id: Fn;
  link_next_id: Fn;
  set_print: Fn;
  rb_new: Fn;
  rb_poll: Fn;
  rb_consume: Fn;
  rb_free: Fn;
  next_map: Fn;
  map_name: Fn;
  object_btf: Fn;
  btf_find: Fn;
  btf_type: Fn;
  btf_name: Fn;
  link_create: Fn;
}

let fns: Fns | undefined;
function f(): Fns {
  if (fns) return fns;
  const l = need();
  fns = {
    open_file: l.func('void *bpf_object__open_file(const char *path, void *opts)'),
    obj_load: l.func('int bpf_object__load(void *obj)'),
    obj_close: l.func('void bpf_object__close(void *obj)'),
    next_program: l.func('void *bpf_object__next_program(void *obj, void *prev)'),
    find_program: l.func('void *bpf_object__find_program_by_name(void *obj, const char *name)'),
    prog_name: l.func('const char *bpf_program__name(void *prog)'),
    prog_section: l.func('const char *bpf_program__section_name(void *prog)'),
    prog_set_autoload: l.func('int bpf_program__set_autoload(void *prog, bool autoload)'),
    prog_autoload: l.func('bool bpf_program__autoload(void *prog)'),
    prog_fd: l.func('int bpf_program__fd(void *prog)'),
    prog_type: l.func('int bpf_program__type(void *prog)'),
    prog_attach: l.func('void *bpf_program__attach(void *prog)'),
    link_destroy: l.func('int bpf_link__destroy(void *link)'),
    link_fd: l.func('int bpf_link__fd(void *link)'),
    find_map: l.func('void *bpf_object__find_map_by_name(void *obj, const char *name)'),
    map_fd: l.func('int bpf_map__fd(void *map)'),
    map_set_max_entries: l.func('int bpf_map__set_max_entries(void *map, uint32_t max_entries)'),
    map_max_entries: l.func('uint32_t bpf_map__max_entries(void *map)'),
    map_set_autocreate: l.func('int bpf_map__set_autocreate(void *map, bool autocreate)'),
    map_initial_value: l.func('void *bpf_map__initial_value(void *map, _Out_ size_t *psize)'),
    map_set_initial_value: l.func('int bpf_map__set_initial_value(void *map, void *data, size_t size)'),
    map_lookup: l.func(
      'int bpf_map__lookup_elem(void *map, void *key, size_t key_sz, void *value, size_t value_sz, uint64_t flags)',
    ),
    map_update: l.func(
      'int bpf_map__update_elem(void *map, void *key, size_t key_sz, void *value, size_t value_sz, uint64_t flags)',
    ),
    map_next_key: l.func('int bpf_map__get_next_key(void *map, void *cur_key, void *next_key, size_t key_sz)'),
    num_possible_cpus: l.func('int libbpf_num_possible_cpus()'),
    probe_prog_type: l.func('int libbpf_probe_bpf_prog_type(int prog_type, void *opts)'),
    probe_map_type: l.func('int libbpf_probe_bpf_map_type(int map_type, void *opts)'),
    probe_helper: l.func('int libbpf_probe_bpf_helper(int prog_type, int helper_id, void *opts)'),
    prog_load: l.func(
      'int bpf_prog_load(int prog_type, const char *name, const char *license, void *insns, size_t insn_cnt, kt_bpf_prog_load_opts *opts)',
    ),
    find_vmlinux_btf_id: l.func('int libbpf_find_vmlinux_btf_id(const char *name, int attach_type)'),
    obj_get_info: l.func('int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *info_len)'),
    prog_next_id: l.func('int bpf_prog_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)'),
    map_next_id: l.func('int bpf_map_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)'),
    link_next_id: l.func('int bpf_link_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)'),
    set_print: l.func('void *libbpf_set_print(kt_libbpf_print_fn *fn)'),
    rb_new: l.func('void *ring_buffer__new(int map_fd, kt_ring_buffer_sample_fn *cb, void *ctx, void *opts)'),
    rb_poll: l.func('int ring_buffer__poll(void *rb, int timeout_ms)'),
    rb_consume: l.func('int ring_buffer__consume(void *rb)'),
    rb_free: l.func('void ring_buffer__free(void *rb)'),
    next_map: l.func('void *bpf_object__next_map(void *obj, void *prev)'),
    map_name: l.func('const char *bpf_map__name(void *map)'),
    object_btf: l.func('void *bpf_object__btf(void *obj)'),
    btf_find: l.func('int btf__find_by_name_kind(void *btf, const char *name, uint32_t kind)'),
    btf_type: l.func('void *btf__type_by_id(void *btf, uint32_t id)'),
    btf_name: l.func('const char *btf__name_by_offset(void *btf, uint32_t offset)'),
    link_create: l.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, void *opts)'),
  };
  return fns;
}

/** A pointer result: NULL (null or 0n) → SyscallError with the errno libbpf set. */
function ptr<T extends bigint>(op: string, value: unknown): T {
  if (value === null || value === undefined || value === 0n) {
    const errno = koffi.errno();
    throw new SyscallError(op, errno > 0 ? errno : 22 /* EINVAL: libbpf failed without errno */);
  }
  return (typeof value === 'bigint' ? value : koffi.address(value)) as T;
}

/** An int result: negative → SyscallError(-result). */
function check(op: string, r: number): number {
  if (r < 0) throw new SyscallError(op, -r);
  return r;
}

// ---- libbpf log hook ----

/** Receives each formatted libbpf message (its "libbpf: " prefix and trailing newline removed). */
export type LibbpfLogger = (level: LibbpfLogLevel, message: string) => void;
let logger: LibbpfLogger | null = null;
let printCallback: bigint | undefined;

function onPrint(level: number, fmt: bigint | null, ap: bigint | null): number {
  if (!logger || fmt === null || ap === null) return 0;
  const out: [bigint | null] = [null];
  const n = c_vasprintf(out, fmt, ap) as number;
  const p = out[0];
  if (n < 0 || p === null) return 0;
  let text: string;
  try {
    text = koffi.decode.string(p, n);
  } finally {
    c_free(p);
  }
  try {
    logger(level as LibbpfLogLevel, text.replace(/^libbpf: /, '').replace(/\n$/, ''));
  } catch {
    // A throwing logger must not unwind through libbpf's C frames.
  }
  return 0;
}

/**
 * Route libbpf's messages to `fn` (null: drop them, libbpf's default would print to stderr). The C
 * callback is registered once per process and stays installed; only the JS target changes.
 */
export function setLibbpfLogger(fn: LibbpfLogger | null): void {
  logger = fn;
  if (printCallback === undefined) {
    printCallback = koffi.register(onPrint, koffi.pointer(PrintFn));
    f().set_print(printCallback);
  }
}

// ---- objects, programs, maps, links ----

export function openObjectFile(path: string): BpfObjectPtr {
  return ptr(`bpf_object__open_file ${path}`, f().open_file(path, null));
}

export function loadObject(obj: BpfObjectPtr): void {
  check('bpf_object__load', f().obj_load(obj) as number);
}

export function closeObject(obj: BpfObjectPtr): void {
  f().obj_close(obj);
}

export function objectPrograms(obj: BpfObjectPtr): BpfProgramPtr[] {
  const out: BpfProgramPtr[] = [];
  let p: unknown = f().next_program(obj, null);
  while (p !== null && p !== 0n && p !== undefined) {
    const prog = (typeof p === 'bigint' ? p : koffi.address(p)) as BpfProgramPtr;
    out.push(prog);
    p = f().next_program(obj, prog);
  }
  return out;
}

export function findProgram(obj: BpfObjectPtr, name: string): BpfProgramPtr | null {
  const p = f().find_program(obj, name) as bigint | null;
  return p ? (p as BpfProgramPtr) : null;
}

export function programName(prog: BpfProgramPtr): string {
  return f().prog_name(prog) as string;
}

export function programSection(prog: BpfProgramPtr): string {
  return f().prog_section(prog) as string;
}

export function setProgramAutoload(prog: BpfProgramPtr, autoload: boolean): void {
  check('bpf_program__set_autoload', f().prog_set_autoload(prog, autoload) as number);
}

export function programAutoload(prog: BpfProgramPtr): boolean {
  return f().prog_autoload(prog) as boolean;
}

/** The program's fd after load, or -1 when it was not loaded. */
export function programFd(prog: BpfProgramPtr): number {
  const fd = f().prog_fd(prog) as number;
  return fd < 0 ? -1 : fd;
}

export function programType(prog: BpfProgramPtr): number {
  return f().prog_type(prog) as number;
}

/** Attach by the program's SEC() name (tracepoint, kprobe, fentry …). */
export function attachProgram(prog: BpfProgramPtr): BpfLinkPtr {
  return ptr(`bpf_program__attach ${programName(prog)}`, f().prog_attach(prog));
}

/** Detach and free a link; returns 0 or -errno (callers tear down everything even when one fails). */
export function destroyLink(link: BpfLinkPtr): number {
  return f().link_destroy(link) as number;
}

export function linkFd(link: BpfLinkPtr): number {
  return f().link_fd(link) as number;
}

export function findMap(obj: BpfObjectPtr, name: string): BpfMapPtr | null {
  const p = f().find_map(obj, name) as bigint | null;
  return p ? (p as BpfMapPtr) : null;
}

export function objectMaps(obj: BpfObjectPtr): BpfMapPtr[] {
  const out: BpfMapPtr[] = [];
  let p: unknown = f().next_map(obj, null);
  while (p !== null && p !== 0n && p !== undefined) {
    const map = (typeof p === 'bigint' ? p : koffi.address(p)) as BpfMapPtr;
    out.push(map);
    p = f().next_map(obj, map);
  }
  return out;
}

export function mapName(map: BpfMapPtr): string {
  return f().map_name(map) as string;
}

export function mapFd(map: BpfMapPtr): number {
  return f().map_fd(map) as number;
}

export function setMapMaxEntries(map: BpfMapPtr, entries: number): void {
  check('bpf_map__set_max_entries', f().map_set_max_entries(map, entries) as number);
}

export function mapMaxEntries(map: BpfMapPtr): number {
  return f().map_max_entries(map) as number;
}

export function setMapAutocreate(map: BpfMapPtr, autocreate: boolean): void {
  check('bpf_map__set_autocreate', f().map_set_autocreate(map, autocreate) as number);
}

/**
 * A copy of a data map's (.rodata, .bss) initial image, to edit and hand back with setMapInitialValue
 * before load.
 */
export function mapInitialValue(map: BpfMapPtr): Buffer {
  const size: [number] = [0];
  const p = ptr<bigint>('bpf_map__initial_value', f().map_initial_value(map, size));
  return Buffer.from(koffi.view(p, size[0]).slice(0));
}

export function setMapInitialValue(map: BpfMapPtr, data: Buffer): void {
  check('bpf_map__set_initial_value', f().map_set_initial_value(map, data, data.length) as number);
}

/** Lookup after load. Returns false when the key is absent (ENOENT). */
export function mapLookup(map: BpfMapPtr, key: Buffer, value: Buffer): boolean {
  const r = f().map_lookup(map, key, key.length, value, value.length, 0) as number;
  if (r === -2) return false;
  check('bpf_map__lookup_elem', r);
  return true;
}

export function mapUpdate(map: BpfMapPtr, key: Buffer, value: Buffer, flags = 0): void {
  check('bpf_map__update_elem', f().map_update(map, key, key.length, value, value.length, flags) as number);
}

/** Every key of a (hash) map after load, in the kernel's iteration order. */
export function mapKeys(map: BpfMapPtr, keySize: number): Buffer[] {
  const keys: Buffer[] = [];
  let cur: Buffer | null = null;
  for (;;) {
    const next = Buffer.alloc(keySize);
    const r = f().map_next_key(map, cur, next, keySize) as number;
    if (r === -2) return keys; // ENOENT: no more keys
    check('bpf_map__get_next_key', r);
    keys.push(next);
    cur = next;
  }
}

export function numPossibleCpus(): number {
  return check('libbpf_num_possible_cpus', f().num_possible_cpus() as number);
}

// ---- the object's own BTF (to find global variables in .rodata) ----

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
  const btf = ptr<bigint>('bpf_object__btf', f().object_btf(obj));
  const id = check(`btf__find_by_name_kind ${section}`, f().btf_find(btf, section, BTF_KIND_DATASEC) as number);
  const t = ptr<bigint>('btf__type_by_id', f().btf_type(btf, id));
  const info = koffi.decode.uint32(t + 4n) as number;
  const vlen = info & 0xffff;
  const out: DatasecVar[] = [];
  for (let i = 0; i < vlen; i++) {
    const si = t + 12n + BigInt(i * 12);
    const varType = koffi.decode.uint32(si) as number;
    const offset = koffi.decode.uint32(si + 4n) as number;
    const size = koffi.decode.uint32(si + 8n) as number;
    const v = ptr<bigint>('btf__type_by_id', f().btf_type(btf, varType));
    const kind = ((koffi.decode.uint32(v + 4n) as number) >>> 24) & 0x1f;
    if (kind !== BTF_KIND_VAR) continue;
    const name = f().btf_name(btf, koffi.decode.uint32(v) as number) as string;
    out.push({ name, offset, size });
  }
  return out;
}

// ---- feature probes and raw loads ----

/** libbpf_probe_bpf_prog_type: 1 supported, 0 not, <0 -errno (inconclusive). */
export function probeProgType(type: number): number {
  return f().probe_prog_type(type, null) as number;
}

/** libbpf_probe_bpf_map_type: 1 supported, 0 not, <0 -errno (inconclusive). */
export function probeMapType(type: number): number {
  return f().probe_map_type(type, null) as number;
}

/** libbpf_probe_bpf_helper: 1 the program type may call the helper, 0 not, <0 -errno. */
export function probeHelper(progType: number, helperId: number): number {
  return f().probe_helper(progType, helperId, null) as number;
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
  return f().prog_load(type, name, 'GPL', insns, insns.length / 8, o) as number;
}

/** bpf_link_create without options (fentry/fexit/tp_btf attach): the link fd, or -errno. */
export function linkCreateRaw(progFdValue: number, targetFd: number, attachType: number): number {
  return f().link_create(progFdValue, targetFd, attachType, null) as number;
}

/** BTF type id of a vmlinux function for an attach type (fentry …), or -errno. */
export function findVmlinuxBtfId(name: string, attachType: number): number {
  return f().find_vmlinux_btf_id(name, attachType) as number;
}

/**
 * Kernel id of a BPF program, map or link fd (bpf_{prog,map,link}_info all start with u32 type, u32 id).
 */
export function bpfObjectId(fd: number): number {
  const info = Buffer.alloc(16);
  const len: [number] = [info.length];
  check('bpf_obj_get_info_by_fd', f().obj_get_info(fd, info, len) as number);
  return info.readUInt32LE(4);
}

export type BpfIdKind = 'prog' | 'map' | 'link';

/** Every id of that kind the kernel currently holds (BPF_*_GET_NEXT_ID walk; needs CAP_SYS_ADMIN). */
export function kernelBpfIds(kind: BpfIdKind): number[] {
  const fn = kind === 'prog' ? f().prog_next_id : kind === 'map' ? f().map_next_id : f().link_next_id;
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

// ---- ring buffer through libbpf (one JS callback per record: for tests and low-rate use) ----

export type RingSample = (data: bigint, size: number) => number | void;

export interface LibbpfRingBuffer {
  /** Wait up to timeoutMs for data, then drain; returns the records consumed. */
  poll(timeoutMs: number): number;
  /** Drain without waiting; returns the records consumed. */
  consume(): number;
  free(): void;
}

export function ringBufferNew(mapFdValue: number, onSample: RingSample): LibbpfRingBuffer {
  const cb = koffi.register(
    (_ctx: bigint | null, data: bigint, size: number | bigint) => onSample(data, Number(size)) ?? 0,
    koffi.pointer(SampleFn),
  );
  let rb: RingBufferPtr;
  try {
    rb = ptr<RingBufferPtr>('ring_buffer__new', f().rb_new(mapFdValue, cb, null, null));
  } catch (err) {
    koffi.unregister(cb);
    throw err;
  }
  let freed = false;
  return {
    poll: (timeoutMs) => check('ring_buffer__poll', f().rb_poll(rb, timeoutMs) as number),
    consume: () => check('ring_buffer__consume', f().rb_consume(rb) as number),
    free: () => {
      if (freed) return;
      freed = true;
      f().rb_free(rb);
      koffi.unregister(cb);
    },
  };
}

/** A zero-copy view of `size` bytes at a record pointer handed to a RingSample. */
export function sampleView(data: bigint, size: number): ArrayBuffer {
  return koffi.view(data, size);
}
