/**
 * The BPF object lifecycle through libbpf: open, size maps, set rodata, toggle autoload, load, attach,
 * look maps up, destroy. Each wrapper is one libbpf call.
 */
import koffi from 'koffi';
import {
  address,
  bindLibbpf,
  check,
  isNull,
  ptr,
  type BpfLinkPtr,
  type BpfMapPtr,
  type BpfObjectPtr,
  type BpfProgramPtr,
} from './lib.js';

const c = bindLibbpf({
  open_file: 'void *bpf_object__open_file(const char *path, void *opts)',
  obj_load: 'int bpf_object__load(void *obj)',
  obj_close: 'void bpf_object__close(void *obj)',
  next_program: 'void *bpf_object__next_program(void *obj, void *prev)',
  find_program: 'void *bpf_object__find_program_by_name(void *obj, const char *name)',
  prog_name: 'const char *bpf_program__name(void *prog)',
  prog_section: 'const char *bpf_program__section_name(void *prog)',
  prog_set_autoload: 'int bpf_program__set_autoload(void *prog, bool autoload)',
  prog_autoload: 'bool bpf_program__autoload(void *prog)',
  prog_fd: 'int bpf_program__fd(void *prog)',
  prog_type: 'int bpf_program__type(void *prog)',
  prog_attach: 'void *bpf_program__attach(void *prog)',
  link_destroy: 'int bpf_link__destroy(void *link)',
  link_fd: 'int bpf_link__fd(void *link)',
  find_map: 'void *bpf_object__find_map_by_name(void *obj, const char *name)',
  next_map: 'void *bpf_object__next_map(void *obj, void *prev)',
  map_name: 'const char *bpf_map__name(void *map)',
  map_fd: 'int bpf_map__fd(void *map)',
  map_set_max_entries: 'int bpf_map__set_max_entries(void *map, uint32_t max_entries)',
  map_max_entries: 'uint32_t bpf_map__max_entries(void *map)',
  map_set_autocreate: 'int bpf_map__set_autocreate(void *map, bool autocreate)',
  map_initial_value: 'void *bpf_map__initial_value(void *map, _Out_ size_t *psize)',
  map_set_initial_value: 'int bpf_map__set_initial_value(void *map, void *data, size_t size)',
  map_lookup: 'int bpf_map__lookup_elem(void *map, void *key, size_t key_sz, void *value, size_t value_sz, uint64_t flags)',
  map_update: 'int bpf_map__update_elem(void *map, void *key, size_t key_sz, void *value, size_t value_sz, uint64_t flags)',
  map_next_key: 'int bpf_map__get_next_key(void *map, void *cur_key, void *next_key, size_t key_sz)',
  num_possible_cpus: 'int libbpf_num_possible_cpus()',
});

export function openObjectFile(path: string): BpfObjectPtr {
  return ptr(`bpf_object__open_file ${path}`, c().open_file(path, null));
}

export function loadObject(obj: BpfObjectPtr): void {
  check('bpf_object__load', c().obj_load(obj) as number);
}

/**
 * bpf_object__load on a libuv worker thread: resolves with 0 or -errno. The main thread stays free meanwhile
 * (the caller builds its decoder while the kernel verifies), and the verifier is not interrupted by signals
 * aimed at the main thread — a profiler's SIGPROF made it return EAGAIN on every one of libbpf's 5 tries.
 * Nothing else may use `obj` until it settles; libbpf's log hook must be quiet (pauseLibbpfLog): a JS
 * callback from this thread would wait for the main thread.
 */
export function loadObjectAsync(obj: BpfObjectPtr): Promise<number> {
  const fn = c().obj_load as unknown as { async: (obj: bigint, cb: (err: unknown, res: number) => void) => void };
  return new Promise((resolve, reject) => fn.async(obj, (err, res) => (err ? reject(err) : resolve(res))));
}

export function closeObject(obj: BpfObjectPtr): void {
  c().obj_close(obj);
}

/** Every item of a libbpf `bpf_object__next_*(obj, prev)` iteration, in order. */
function every<T extends bigint>(next: (obj: BpfObjectPtr, prev: bigint | null) => unknown, obj: BpfObjectPtr): T[] {
  const out: T[] = [];
  for (let p = next(obj, null); !isNull(p); p = next(obj, out[out.length - 1])) out.push(address(p) as T);
  return out;
}

export function objectPrograms(obj: BpfObjectPtr): BpfProgramPtr[] {
  return every((o, prev) => c().next_program(o, prev), obj);
}

export function findProgram(obj: BpfObjectPtr, name: string): BpfProgramPtr | null {
  const p = c().find_program(obj, name) as bigint | null;
  return p ? (p as BpfProgramPtr) : null;
}

export function programName(prog: BpfProgramPtr): string {
  return c().prog_name(prog) as string;
}

export function programSection(prog: BpfProgramPtr): string {
  return c().prog_section(prog) as string;
}

export function setProgramAutoload(prog: BpfProgramPtr, autoload: boolean): void {
  check('bpf_program__set_autoload', c().prog_set_autoload(prog, autoload) as number);
}

export function programAutoload(prog: BpfProgramPtr): boolean {
  return c().prog_autoload(prog) as boolean;
}

/** The program's fd after load, or -1 when it was not loaded. */
export function programFd(prog: BpfProgramPtr): number {
  const fd = c().prog_fd(prog) as number;
  return fd < 0 ? -1 : fd;
}

export function programType(prog: BpfProgramPtr): number {
  return c().prog_type(prog) as number;
}

/** Attach by the program's SEC() name (tracepoint, kprobe, fentry …). */
export function attachProgram(prog: BpfProgramPtr): BpfLinkPtr {
  return ptr(`bpf_program__attach ${programName(prog)}`, c().prog_attach(prog));
}

/** Detach and free a link; returns 0 or -errno (callers tear down everything even when one fails). */
export function destroyLink(link: BpfLinkPtr): number {
  return c().link_destroy(link) as number;
}

/**
 * bpf_link__destroy on a libuv worker thread. Detaching a tracepoint waits for RCU grace periods in the
 * kernel (28–88 ms per link measured here, ≈0.4 s for seven one after the other); destroyed side by side
 * the waits overlap. Resolves with the result (0 or -errno); the link must not be used again.
 */
export function destroyLinkAsync(link: BpfLinkPtr): Promise<number> {
  const fn = c().link_destroy as unknown as { async: (link: bigint, cb: (err: unknown, res: number) => void) => void };
  return new Promise((resolve, reject) => fn.async(link, (err, res) => (err ? reject(err) : resolve(res))));
}

export function linkFd(link: BpfLinkPtr): number {
  return c().link_fd(link) as number;
}

export function findMap(obj: BpfObjectPtr, name: string): BpfMapPtr | null {
  const p = c().find_map(obj, name) as bigint | null;
  return p ? (p as BpfMapPtr) : null;
}

export function objectMaps(obj: BpfObjectPtr): BpfMapPtr[] {
  return every((o, prev) => c().next_map(o, prev), obj);
}

export function mapName(map: BpfMapPtr): string {
  return c().map_name(map) as string;
}

export function mapFd(map: BpfMapPtr): number {
  return c().map_fd(map) as number;
}

export function setMapMaxEntries(map: BpfMapPtr, entries: number): void {
  check('bpf_map__set_max_entries', c().map_set_max_entries(map, entries) as number);
}

export function mapMaxEntries(map: BpfMapPtr): number {
  return c().map_max_entries(map) as number;
}

export function setMapAutocreate(map: BpfMapPtr, autocreate: boolean): void {
  check('bpf_map__set_autocreate', c().map_set_autocreate(map, autocreate) as number);
}

/**
 * A copy of a data map's (.rodata, .bss) initial image, to edit and hand back with setMapInitialValue
 * before load.
 */
export function mapInitialValue(map: BpfMapPtr): Buffer {
  const size: [number] = [0];
  const p = ptr<bigint>('bpf_map__initial_value', c().map_initial_value(map, size));
  return Buffer.from(koffi.view(p, size[0]).slice(0));
}

export function setMapInitialValue(map: BpfMapPtr, data: Buffer): void {
  check('bpf_map__set_initial_value', c().map_set_initial_value(map, data, data.length) as number);
}

/** Lookup after load. Returns false when the key is absent (ENOENT). */
export function mapLookup(map: BpfMapPtr, key: Buffer, value: Buffer): boolean {
  const r = c().map_lookup(map, key, key.length, value, value.length, 0) as number;
  if (r === -2) return false;
  check('bpf_map__lookup_elem', r);
  return true;
}

export function mapUpdate(map: BpfMapPtr, key: Buffer, value: Buffer, flags = 0): void {
  check('bpf_map__update_elem', c().map_update(map, key, key.length, value, value.length, flags) as number);
}

/** Every key of a (hash) map after load, in the kernel's iteration order. */
export function mapKeys(map: BpfMapPtr, keySize: number): Buffer[] {
  const keys: Buffer[] = [];
  let cur: Buffer | null = null;
  for (;;) {
    const next = Buffer.alloc(keySize);
    const r = c().map_next_key(map, cur, next, keySize) as number;
    if (r === -2) return keys; // ENOENT: no more keys
    check('bpf_map__get_next_key', r);
    keys.push(next);
    cur = next;
  }
}

export function numPossibleCpus(): number {
  return check('libbpf_num_possible_cpus', c().num_possible_cpus() as number);
}
