/**
 * Configuring the opened BPF object, libbpf-tools style, in lifecycle order: check the user's options;
 * before load write the rodata filters, choose which programs load, size the maps; after load fill the pids
 * and flex_arrays maps (the latter from the kernel's BTF: which arguments' flexible-array entries to read).
 */
import {
  type BpfMapPtr,
  type BpfObjectPtr,
  type BpfProgramPtr,
  datasecVars,
  findMap,
  mapInitialValue,
  mapUpdate,
  objectPrograms,
  programName,
  setMapInitialValue,
  setMapMaxEntries,
  setProgramAutoload,
} from '../ffi/libbpf.js';
import { Btf } from '../btf/index.js';
import { kernelBtf } from '../btf/kernel.js';
import { FlexArrayEncoder, flexArrayRules, type FlexArrayRule } from './flex-arrays.js';

export const TASK_COMM_LEN = 16;

export function checkRingBytes(n: number): number {
  if (!Number.isInteger(n) || n < 4096 || n > 1 << 30 || (n & (n - 1)) !== 0) {
    throw new RangeError(`ring buffer size must be a power of two between 4096 and 1 GiB bytes (got ${n})`);
  }
  return n;
}

export function checkWakeupBytes(n: number, ringBytes: number): number {
  if (!Number.isInteger(n) || n < 0 || n >= ringBytes) {
    throw new RangeError(`wakeup threshold must be 0 (off) or a byte count below the ring size ${ringBytes} (got ${n})`);
  }
  return n;
}

export function checkPids(pids: number[]): number[] {
  for (const p of pids) {
    if (!Number.isInteger(p) || p <= 0 || p > 0x3fffffff) throw new RangeError(`invalid pid ${p}`);
  }
  return [...new Set(pids)];
}

/** The comm filter as the kernel's 16-byte, NUL-padded name (longer names are cut, and the log says so). */
export function checkComm(comm: string | undefined, log: (line: string) => void): Buffer | undefined {
  if (comm === undefined) return undefined;
  const bytes = Buffer.from(comm, 'utf8');
  if (bytes.length === 0) throw new RangeError('process name filter is empty');
  if (bytes.length >= TASK_COMM_LEN) {
    log(`process names are at most ${TASK_COMM_LEN - 1} bytes in the kernel: matching "${bytes.subarray(0, TASK_COMM_LEN - 1)}"`);
  }
  const out = Buffer.alloc(TASK_COMM_LEN);
  bytes.copy(out, 0, 0, TASK_COMM_LEN - 1);
  return out;
}

export function requireMap(obj: BpfObjectPtr, name: string): BpfMapPtr {
  const m = findMap(obj, name);
  if (!m) throw new Error(`BPF object has no map "${name}" (stale or foreign object?)`);
  return m;
}

export interface RodataFilters {
  pids: number[];
  comm?: Buffer;
  wakeupBytes: number;
  aggregate: boolean;
  /** The kernel lets tracepoint programs call bpf_rdonly_cast (else the object's CO-RE reads are used). */
  rdonlyCast: boolean;
  /** The hardware-exit programs are loaded. */
  hwHooks?: boolean;
  /** log2 of the MMIO granule handling time is keyed by (aggregate mode). */
  mmioShift?: number;
}

/** Write the `const volatile` filters into the .rodata image, at offsets from the object's BTF. */
export function writeRodata(obj: BpfObjectPtr, f: RodataFilters): void {
  const rodata = requireMap(obj, '.rodata');
  const image = mapInitialValue(rodata);
  const vars = new Map(datasecVars(obj, '.rodata').map((v) => [v.name, v]));
  const at = (name: string, size: number): number => {
    const v = vars.get(name);
    if (!v || v.size !== size) throw new Error(`.rodata variable ${name} (${size} bytes) not found in the BPF object`);
    return v.offset;
  };
  if (f.pids.length === 1) image.writeUInt32LE(f.pids[0], at('filter_pid', 4));
  if (f.pids.length > 1) image.writeUInt8(1, at('filter_pids', 1));
  if (f.comm) {
    image.writeUInt8(1, at('filter_comm', 1));
    f.comm.copy(image, at('targ_comm', TASK_COMM_LEN));
  }
  image.writeBigUInt64LE(BigInt(f.wakeupBytes), at('wakeup_bytes', 8));
  if (f.aggregate) image.writeUInt8(1, at('aggregate_only', 1));
  // Objects built before the CO-RE fallback have no switch: they always call the kfunc.
  if (f.rdonlyCast && vars.has('have_rdonly_cast')) image.writeUInt8(1, at('have_rdonly_cast', 1));
  if (f.hwHooks) image.writeUInt8(1, at('hw_hooks', 1));
  if (f.mmioShift !== undefined && vars.has('mmio_granule_shift')) image.writeUInt32LE(f.mmioShift, at('mmio_granule_shift', 4));
  setMapInitialValue(rodata, image);
}

/** Autoload exactly `wanted`; every program of the object by name. */
export function selectPrograms(obj: BpfObjectPtr, wanted: string[]): Map<string, BpfProgramPtr> {
  const byName = new Map<string, BpfProgramPtr>();
  for (const prog of objectPrograms(obj)) {
    const name = programName(prog);
    setProgramAutoload(prog, wanted.includes(name));
    byName.set(name, prog);
  }
  for (const name of wanted) {
    if (!byName.has(name)) throw new Error(`BPF object has no program "${name}" (stale object?)`);
  }
  return byName;
}

export function fillPids(obj: BpfObjectPtr, pids: number[]): void {
  if (pids.length < 2) return;
  const map = requireMap(obj, 'pids');
  const key = Buffer.alloc(4);
  const one = Buffer.from([1]);
  for (const p of pids) {
    key.writeUInt32LE(p);
    mapUpdate(map, key, one);
  }
}

export interface FlexArrayPlan {
  map: BpfMapPtr;
  rules: FlexArrayRule[];
  encoder: FlexArrayEncoder;
}

/**
 * What goes into the flex_arrays map, computed before load (it sizes the map). An object without the map
 * (an older build, e.g. a benchmark baseline) or a kernel BTF the rules cannot be read from still traces:
 * arguments are then captured at their _IOC_SIZE only, and the log says so.
 */
export function flexArrayPlan(obj: BpfObjectPtr, path: string, log: (line: string) => void): FlexArrayPlan | undefined {
  const map = findMap(obj, 'flex_arrays');
  if (!map) {
    log(`${path} has no flex_arrays map: flexible-array entries (kvm_msrs.entries, …) are not captured`);
    return undefined;
  }
  try {
    const plan = { map, rules: flexArrayRules(kernelBtf()), encoder: new FlexArrayEncoder(Btf.fromElf(path)) };
    setMapMaxEntries(map, Math.max(1, plan.rules.length));
    return plan;
  } catch (err) {
    log(`flexible-array entries are not captured: ${(err as Error).message}`);
    setMapMaxEntries(map, 1);
    return undefined;
  }
}

/** After load, before attach: the programs look entries up from their first run. */
export function fillFlexArrays(plan: FlexArrayPlan): void {
  for (const r of plan.rules) mapUpdate(plan.map, plan.encoder.key(r), plan.encoder.value(r));
}
