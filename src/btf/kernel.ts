/**
 * The running kernel's types, as every part of kvm-trace that reads kernel layouts should see them: vmlinux
 * BTF, plus KVM's module BTF when KVM is a module. Distribution kernels build KVM as kvm.ko (+ kvm-intel /
 * kvm-amd), and then struct kvm_run, kvm_regs, kvm_msrs, … are not in /sys/kernel/btf/vmlinux at all but in
 * /sys/kernel/btf/kvm — split BTF whose type ids and string offsets continue vmlinux's (raw.ts reads it).
 * Where KVM is built in (this project's PVM hosts) there is no kvm module BTF and vmlinux has everything.
 */
import { existsSync, readFileSync } from 'node:fs';
import { Btf } from './index.js';
import { BtfError } from './types.js';

export const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';
export const KVM_MODULE_BTF = '/sys/kernel/btf/kvm';

const merged = new Map<string, Btf>();

/**
 * vmlinux BTF merged with kvm's module BTF when `kvm` exists (one lookup sees both), else vmlinux alone.
 * Parsed once per pair of paths. Throws a BtfError when vmlinux BTF cannot be read.
 */
export function kernelBtf(paths: { vmlinux?: string; kvm?: string } = {}): Btf {
  const vmlinuxPath = paths.vmlinux ?? VMLINUX_BTF;
  const kvmPath = paths.kvm ?? KVM_MODULE_BTF;
  const base = Btf.vmlinux(vmlinuxPath);
  if (!existsSync(kvmPath)) return base;
  const key = `${vmlinuxPath}\0${kvmPath}`;
  let btf = merged.get(key);
  if (!btf) {
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(kvmPath);
    } catch (err) {
      throw new BtfError(`cannot read KVM's module BTF ${kvmPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    btf = Btf.fromRaw(bytes, base, `${vmlinuxPath} + ${kvmPath}`);
    merged.set(key, btf);
  }
  return btf;
}

/** Module BTF files are split over vmlinux: /sys/kernel/btf/NAME for any NAME but vmlinux. */
export function isModuleBtfPath(path: string): boolean {
  return /^\/sys\/kernel\/btf\/[^/]+$/.test(path) && path !== VMLINUX_BTF;
}

/**
 * The one line for a kernel type found in neither vmlinux nor kvm's module BTF, e.g.
 * "struct kvm_regs is in neither /sys/kernel/btf/vmlinux nor /sys/kernel/btf/kvm".
 */
export function missingKernelType(type: string, kvmPath = KVM_MODULE_BTF): string {
  if (existsSync(kvmPath)) return `${type} is in neither ${VMLINUX_BTF} nor ${kvmPath}`;
  return `${type} is not in ${VMLINUX_BTF}, and there is no ${kvmPath} (KVM not loaded, or a kernel without module BTF: modprobe kvm-intel or kvm-amd)`;
}
