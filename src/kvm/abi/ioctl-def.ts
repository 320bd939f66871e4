/**
 * The shape of one row of the KVM ioctl table: what scripts/gen-ioctl-table.ts writes into
 * ioctls.generated.ts and what ioctl-table.ts indexes. Kept apart from both so the generated data and its
 * index do not import each other.
 */
import type { IocDir } from './ioc.js';

export type FdKind = 'system' | 'vm' | 'vcpu' | 'device';

export interface IoctlDef {
  name: string;
  cmd: number;
  dir: IocDir;
  nr: number;
  /** sizeof(argType) as encoded in the number; 0 for _IO. */
  size: number;
  /** C type as the header writes it ("struct kvm_regs", "__u64", "unsigned long"); null for _IO. */
  argType: string | null;
  /** Struct tag when argType is a struct ("kvm_regs"), else null. */
  argStruct: string | null;
  fdKinds: readonly FdKind[];
  /** Other names with the same request number. */
  aliases: readonly string[];
}

/** A header ioctl whose argument type exists only on another architecture, so it has no x86_64 number. */
export interface UnavailableIoctl {
  name: string;
  dir: IocDir;
  nr: number;
  argType: string | null;
  fdKinds: readonly FdKind[];
}
