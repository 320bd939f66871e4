/**
 * Per request number, everything the decoder needs, computed once and cached: the name from the ioctl
 * table (unknown numbers → "KVM_UNKNOWN_0x…"), cmd hex, size and direction from the number, and the
 * function that turns the captured argument bytes (or the integer argument) into `args`.
 *
 * Rules for `args` (documented in records.ts):
 * - struct arguments decode generically from the running kernel's BTF (btf-args.ts) by the table's
 *   argStruct; scalar pointer arguments (KVM_SET_IDENTITY_MAP_ADDR's __u64) as {addr} or {value};
 * - integer (non-pointer) arguments are named: KVM_CHECK_EXTENSION {cap:"KVM_CAP_…", value:<cap number>},
 *   KVM_CREATE_VM {type}, KVM_CREATE_VCPU {id}, KVM_SET_TSS_ADDR {addr}, KVM_SET_NR_MMU_PAGES {pages},
 *   KVM_SET_BOOT_CPU_ID {id}; KVM_ENABLE_CAP's cap member likewise becomes {cap:"KVM_CAP_…", value:n, …};
 * - which bytes: the out bytes (what the kernel wrote back) when the call succeeded and they were
 *   captured, else the in bytes; for read-write calls with both, `args_in` lists the top-level scalar
 *   members whose value the caller passed differently (e.g. KVM_GET_SUPPORTED_CPUID's nent offered).
 */
import type { Btf } from '../btf/index.js';
import { decodeIoc, dirName, cmdHex, type IocDir } from '../kvm/abi/ioc.js';
import { capName, ioctlByCmd, type FdKind as TableFdKind, type IoctlDef } from '../kvm/abi/ioctl-table.js';
import { KT_F_IN_FAULT, KT_F_IN_TRUNC, KT_F_OUT_FAULT, KT_F_OUT_TRUNC } from '../bpf/event-layout.js';
import { hex64, u64n, u64Value } from '../cdata/values.js';
import type { ArgsObject, BtfArgsDecoder, StructDecoder } from './btf-args.js';
import type { FdKind, IoctlRecord } from './records.js';

/** How the creation ioctls feed the fd table. */
export type Creates = 'vm' | 'vcpu' | 'device' | null;

export interface CmdInfo {
  cmd: number;
  cmdHex: string;
  name: string;
  known: boolean;
  size: number;
  dir: IocDir;
  def: IoctlDef | undefined;
  isRun: boolean;
  creates: Creates;
  /** Decodes the integer argument (no data captured for it), or undefined. */
  fromArg?: (arg: number, argHex: string) => ArgsObject;
  /** Decodes captured argument bytes, or undefined when the argument is not a pointer to data. */
  fromBytes?: (dv: DataView, off: number, len: number) => ArgsObject;
  /** Offsets of kvm_create_device.fd / .flags in the argument (KVM_CREATE_DEVICE only). */
  createdFdOffset?: number;
  createdFlagsOffset?: number;
}

const INT_ARGS: Record<string, (arg: number, argHex: string) => ArgsObject> = {
  KVM_CHECK_EXTENSION: (a) => ({ cap: capName(a), value: a }),
  KVM_CREATE_VM: (a) => ({ type: a }),
  KVM_CREATE_VCPU: (a) => ({ id: a }),
  KVM_SET_TSS_ADDR: (_a, h) => ({ addr: h }),
  KVM_SET_NR_MMU_PAGES: (a) => ({ pages: a }),
  KVM_SET_BOOT_CPU_ID: (a) => ({ id: a }),
};

/** Scalar pointer arguments whose value is an address. */
const ADDR_SCALARS = new Set(['KVM_SET_IDENTITY_MAP_ADDR']);

function scalarDecoder(name: string, size: number): (dv: DataView, off: number, len: number) => ArgsObject {
  const key = ADDR_SCALARS.has(name) ? 'addr' : 'value';
  return (dv, off, len) => {
    if (len < size || size === 0) return { _truncated: true };
    let v: number | string;
    if (size === 8) {
      v = key === 'addr' ? hex64(dv, off) : u64Value(dv, off);
    } else if (size === 4) v = dv.getUint32(off, true);
    else if (size === 2) v = dv.getUint16(off, true);
    else v = dv.getUint8(off);
    return { [key]: v };
  };
}

/** KVM_ENABLE_CAP: {cap:"KVM_CAP_…", value:<number>, flags, args, …}. */
function withCapName(inner: StructDecoder): StructDecoder {
  return (dv, off, len) => {
    const a = inner(dv, off, len);
    if (typeof a.cap !== 'number') return a;
    const { cap, ...rest } = a;
    return { cap: capName(cap), value: cap, ...rest };
  };
}

const TABLE_KIND: Record<FdKind, TableFdKind | undefined> = {
  system: 'system',
  vm: 'vm',
  vcpu: 'vcpu',
  device: 'device',
  unknown: undefined,
};

const KIND_SLOT: Record<FdKind, number> = { unknown: 0, system: 1, vm: 2, vcpu: 3, device: 4 };

/** Builds and caches CmdInfo per (request number, fd kind). */
/** Unknown request numbers whose info is cached (the rest is rebuilt per record: slower, bounded). */
const MAX_UNKNOWN_CACHED = 4096;

export class CmdTable {
  private readonly cache = new Map<number, CmdInfo>();
  private readonly createDeviceFd: number | undefined;
  private readonly createDeviceFlags: number | undefined;

  constructor(
    btf: Btf,
    private readonly args: BtfArgsDecoder,
  ) {
    const cd = btf.struct('kvm_create_device');
    this.createDeviceFd = cd?.members.find((m) => m.name === 'fd')?.offset;
    this.createDeviceFlags = cd?.members.find((m) => m.name === 'flags')?.offset;
  }

  /** Info for `cmd` issued on an fd of `kind` (the kind picks among names sharing one number). */
  get(cmd: number, kind: FdKind): CmdInfo {
    const key = cmd * 8 + KIND_SLOT[kind];
    let c = this.cache.get(key);
    if (!c) {
      c = this.build(cmd >>> 0, kind);
      // Known requests are a fixed table; unknown ones are whatever a caller sends: cache a bounded few.
      if (c.known || this.unknownCached++ < MAX_UNKNOWN_CACHED) this.cache.set(key, c);
    }
    return c;
  }

  private unknownCached = 0;

  private build(cmd: number, kind: FdKind): CmdInfo {
    const def = ioctlByCmd(cmd, TABLE_KIND[kind]);
    const ioc = decodeIoc(cmd);
    const hex = cmdHex(cmd);
    const name = def?.name ?? `KVM_UNKNOWN_${hex}`;
    const info: CmdInfo = {
      cmd,
      cmdHex: hex,
      name,
      known: def !== undefined,
      size: ioc.size,
      dir: dirName(ioc.dir),
      def,
      isRun: name === 'KVM_RUN',
      creates: name === 'KVM_CREATE_VM' ? 'vm' : name === 'KVM_CREATE_VCPU' ? 'vcpu' : name === 'KVM_CREATE_DEVICE' ? 'device' : null,
    };
    if (INT_ARGS[name]) info.fromArg = INT_ARGS[name];
    if (def?.argStruct) {
      const d = this.args.forStruct(def.argStruct);
      if (d) info.fromBytes = name === 'KVM_ENABLE_CAP' ? withCapName(d) : d;
    } else if (def?.argType && ioc.size > 0) {
      info.fromBytes = scalarDecoder(name, ioc.size);
    }
    if (name === 'KVM_CREATE_DEVICE') {
      info.createdFdOffset = this.createDeviceFd;
      info.createdFlagsOffset = this.createDeviceFlags;
    }
    return info;
  }
}

/** Top-level scalar members of `inArgs` that differ from `outArgs` (arrays and objects are left out). */
export function argsInDiff(inArgs: ArgsObject, outArgs: ArgsObject): ArgsObject | undefined {
  let diff: ArgsObject | undefined;
  for (const k of Object.keys(inArgs)) {
    const v = inArgs[k];
    if (typeof v === 'object' || k === '_truncated') continue;
    if (outArgs[k] !== v) (diff ??= {})[k] = v;
  }
  return diff;
}

/**
 * Set `args` (and `args_in`) of ioctl record `r` from what was captured: the integer argument (a u64 at
 * `argOff`), or the argument bytes — the out bytes (what the kernel wrote back) when the call succeeded
 * and they were captured, else the in bytes; with both, `args_in` lists what the caller passed differently.
 * `flags` are the record's KT_F_* bits (truncated or faulted copies).
 */
export function decodeArgs(
  c: CmdInfo,
  r: IoctlRecord,
  dv: DataView,
  argOff: number,
  flags: number,
  inOff: number,
  inLen: number,
  outOff: number,
  outLen: number,
): void {
  if (c.fromArg) {
    r.args = c.fromArg(u64n(dv, argOff), r.arg);
    return;
  }
  const dec = c.fromBytes;
  if (!dec) return;
  let args: ArgsObject | undefined;
  let argsIn: ArgsObject | undefined;
  if (outLen > 0 && r.ret >= 0) {
    args = dec(dv, outOff, outLen);
    if (flags & KT_F_OUT_TRUNC) args._truncated = true;
    if (inLen > 0) argsIn = argsInDiff(dec(dv, inOff, inLen), args);
  } else if (inLen > 0) {
    args = dec(dv, inOff, inLen);
    if (flags & KT_F_IN_TRUNC) args._truncated = true;
  } else if (outLen > 0) {
    args = dec(dv, outOff, outLen);
    if (flags & KT_F_OUT_TRUNC) args._truncated = true;
  } else if (flags & (KT_F_IN_FAULT | KT_F_OUT_FAULT)) {
    // The argument pointer could not be read (bad pointer: usually the call's EFAULT).
    args = { _fault: true };
  }
  if (args) r.args = args;
  if (argsIn) r.args_in = argsIn;
}
