/**
 * The KVM ioctl table: every `_IO*(KVMIO, ...)` request of the uapi header with its number, direction,
 * argument type and size, and the fd kinds it is valid on; plus capability and exit-reason names. The data
 * is generated (scripts/gen-ioctl-table.ts, from a C program compiled against the header) so no request
 * number or size here was typed by hand; this file only indexes it.
 *
 * Several names can share one number (deprecated placeholders and their public names; KVM_GET_ONE_REG and
 * arm's KVM_ARM_SET_DEVICE_ADDR are both _IOW(KVMIO, 0xab, 16 bytes)). `ioctlByCmd` returns the canonical
 * name, or the one valid on a given fd kind when asked.
 */
import { decodeIoc, dirName, KVMIO, type IocDir } from './ioc.js';
import type { FdKind, IoctlDef, UnavailableIoctl } from './ioctl-def.js';
import { GENERATED_IOCTLS, GENERATED_UNAVAILABLE_IOCTLS, KVM_HEADER_VERSION } from './ioctls.generated.js';
import { KVM_CAP } from './caps.generated.js';
import { KVM_EXIT } from './exit-reasons.generated.js';

export type { FdKind, IoctlDef, UnavailableIoctl } from './ioctl-def.js';

export { KVM_HEADER_VERSION };
export const IOCTLS: readonly IoctlDef[] = GENERATED_IOCTLS;
export const UNAVAILABLE_IOCTLS: readonly UnavailableIoctl[] = GENERATED_UNAVAILABLE_IOCTLS;

const OTHER_ARCH = /^KVM_(ARM|PPC|S390|RISCV|MIPS|LOONGARCH)_/;

/**
 * Lower is more canonical: public names before __KVM_DEPRECATED_* placeholders, names usable on x86 before
 * other architectures' prefixed names, then header order.
 */
function rank(d: IoctlDef, index: number): number {
  return (d.name.startsWith('__') ? 2_000_000 : 0) + (OTHER_ARCH.test(d.name) ? 1_000_000 : 0) + index;
}

const byName = new Map<string, IoctlDef>(IOCTLS.map((d) => [d.name, d]));
const ranks = new Map<IoctlDef, number>(IOCTLS.map((d, i) => [d, rank(d, i)]));
const byRank = (a: IoctlDef, b: IoctlDef): number => ranks.get(a)! - ranks.get(b)!;
const byCmdAll = new Map<number, IoctlDef[]>();
for (const d of IOCTLS) byCmdAll.set(d.cmd, [...(byCmdAll.get(d.cmd) ?? []), d]);
for (const list of byCmdAll.values()) list.sort(byRank);
const unavailableByName = new Map(UNAVAILABLE_IOCTLS.map((u) => [u.name, u]));

/** The ioctl called `name` (KVM_ prefix required). Throws on an unknown name. */
export function ioctlByName(name: string): IoctlDef {
  const d = byName.get(name);
  if (d) return d;
  const u = unavailableByName.get(name);
  if (u) throw new Error(`${name} has no x86_64 request number: its argument ${u.argType} is defined only for another architecture`);
  throw new Error(`unknown KVM ioctl ${name} (not in the ${KVM_HEADER_VERSION})`);
}

/**
 * The ioctl with request number `cmd`: the canonical name when several share it, or the first one valid on
 * `fdKind` when given. Undefined for a number the header does not define.
 */
export function ioctlByCmd(cmd: number, fdKind?: FdKind): IoctlDef | undefined {
  const list = byCmdAll.get(cmd >>> 0);
  if (!list) return undefined;
  if (fdKind) return list.find((d) => d.fdKinds.includes(fdKind)) ?? list[0];
  return list[0];
}

/** Every name (canonical first) that has request number `cmd`. */
export function ioctlsByCmd(cmd: number): readonly IoctlDef[] {
  return byCmdAll.get(cmd >>> 0) ?? [];
}

/**
 * KVM ioctls with this nr (and direction, when given), whatever their size: how the ABI explainer finds
 * what a request with a wrong size was meant to be. Canonical names first.
 */
export function ioctlByTypeNr(nr: number, dir?: IocDir | number): IoctlDef[] {
  const want = dir === undefined ? undefined : typeof dir === 'number' ? dirName(dir) : dir;
  return IOCTLS.filter((d) => d.nr === nr && (want === undefined || d.dir === want)).sort(byRank);
}

/** Header ioctls with this nr whose number cannot be formed on x86_64 (other architectures). */
export function unavailableByTypeNr(nr: number, dir?: IocDir): UnavailableIoctl[] {
  return UNAVAILABLE_IOCTLS.filter((u) => u.nr === nr && (dir === undefined || u.dir === dir));
}

/** True when `cmd` is a KVMIO-type request number. */
export function isKvmIoctl(cmd: number): boolean {
  return decodeIoc(cmd).type === KVMIO;
}

const capNames = new Map<number, string>();
for (const [k, v] of Object.entries(KVM_CAP)) if (!capNames.has(v)) capNames.set(v, `KVM_CAP_${k}`);

/** "KVM_CAP_USER_MEMORY" for 3; `KVM_CAP_<n>` for a number the header does not name. */
export function capName(n: number): string {
  return capNames.get(n) ?? `KVM_CAP_${n}`;
}

/** Capability number of "KVM_CAP_USER_MEMORY" or "USER_MEMORY". Throws on an unknown name. */
export function capValue(name: string): number {
  const key = name.startsWith('KVM_CAP_') ? name.slice(8) : name;
  const v = (KVM_CAP as Record<string, number>)[key];
  if (v === undefined) throw new Error(`unknown KVM capability ${name}`);
  return v;
}

/** A capability given by number or by name ("KVM_CAP_USER_MEMORY" or "USER_MEMORY"). */
export type Cap = number | string;
export const capNumber = (cap: Cap): number => (typeof cap === 'number' ? cap : capValue(cap));

const exitNames = new Map<number, string>();
for (const [k, v] of Object.entries(KVM_EXIT)) if (!exitNames.has(v)) exitNames.set(v, k);

/** "IO", "HLT", ... for kvm_run.exit_reason; "UNKNOWN_<n>" for a code the header does not name. */
export function exitReasonName(code: number): string {
  return exitNames.get(code) ?? `UNKNOWN_${code}`;
}
