/**
 * Explains a failed KVM ioctl from what the request number itself says, checked against the kernel's BTF.
 * The size of the argument struct is part of the number, so a caller whose struct definition has the wrong
 * size sends a number the kernel does not know: ENOTTY (or EINVAL), never a partially-read struct. When the
 * number's nr and direction match a known ioctl but its size does not, the caller's struct is wrong; when
 * the nr matches nothing, the number is unknown (or newer than the header the table came from).
 */
import type { Btf } from '../../btf/index.js';
import { cmdHex, decodeIoc, dirName, KVMIO } from '../../kvm/abi/ioc.js';
import {
  ioctlByCmd, ioctlByTypeNr, KVM_HEADER_VERSION, unavailableByTypeNr, type FdKind, type IoctlDef,
} from '../../kvm/abi/ioctl-table.js';
import { btfSizeOfCType } from './check.js';

const MACRO = { none: '_IO', write: '_IOW', read: '_IOR', readwrite: '_IOWR' } as const;

const hex2 = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;

function kernelSize(btf: Btf, d: IoctlDef): { size: number; from: string } {
  const k = d.argType ? btfSizeOfCType(btf, d.argType) : undefined;
  return k !== undefined ? { size: k, from: "kernel's" } : { size: d.size, from: "uapi header's" };
}

/**
 * Why `cmd` failed with `errno` ("ENOTTY", "EINVAL"), when the number shows it; undefined when no cause is
 * visible. `fdKind`, when known, lets a right number on the wrong kind of fd be named too.
 */
export function explainFailure(cmd: number, errno: string, btf: Btf, fdKind?: FdKind): string | undefined {
  if (errno !== 'ENOTTY' && errno !== 'EINVAL') return undefined;
  const dec = decodeIoc(cmd);
  if (dec.type !== KVMIO) return undefined;
  const dir = dirName(dec.dir);
  const req = `${cmdHex(cmd)} (${MACRO[dir]}(KVMIO, ${hex2(dec.nr)}${dir === 'none' ? '' : `, ${dec.size} bytes`}))`;

  const exact = ioctlByCmd(cmd, fdKind);
  if (exact) {
    if (fdKind && !exact.fdKinds.includes(fdKind)) {
      return `${exact.name} is a ${exact.fdKinds.join('/')} ioctl but was issued on a ${fdKind} fd`;
    }
    if (exact.argType) {
      const k = kernelSize(btf, exact);
      if (k.size !== exact.size) {
        return `${exact.name} encodes ${exact.size} bytes, ${k.from} ${exact.argType} is ${k.size}: ` +
          'the header the caller was built with disagrees with this kernel';
      }
    }
    return undefined; // a well-formed request: the cause is in its argument or the VM's state, not visible here
  }

  const sameDir = ioctlByTypeNr(dec.nr, dir);
  const withArg = sameDir.filter((d) => d.argType);
  if (withArg.length > 0) {
    const d = (fdKind && withArg.find((x) => x.fdKinds.includes(fdKind))) || withArg[0];
    const k = kernelSize(btf, d);
    if (k.size !== dec.size) {
      return `${req} looks like ${d.name} but encodes ${dec.size} bytes, ${k.from} ${d.argType} is ${k.size}: ` +
        "the caller's struct definition is wrong";
    }
    return undefined; // the size is this kernel's: only the header behind the table is older; no cause visible
  }
  const foreign = unavailableByTypeNr(dec.nr, dir);
  if (foreign.length > 0) {
    return `${req} has the nr and direction of ${foreign.map((u) => u.name).join(' / ')}, which exists only on another architecture`;
  }
  const anyDir = ioctlByTypeNr(dec.nr);
  if (anyDir.length > 0) {
    const names = anyDir.map((d) => `${d.name} (${MACRO[d.dir]}${d.argType ? `, ${d.size} bytes` : ''})`);
    return `${req} matches no KVM ioctl; nr ${hex2(dec.nr)} is ${names.join(' or ')}: wrong direction in the request`;
  }
  return `${req}: no KVM ioctl has nr ${hex2(dec.nr)} in the ${KVM_HEADER_VERSION} (a wrong number, or an ioctl newer than that header)`;
}
