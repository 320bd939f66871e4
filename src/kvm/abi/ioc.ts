/**
 * The Linux ioctl request encoding (include/uapi/asm-generic/ioctl.h, as used on x86_64):
 * bits 0-7 nr, 8-15 type, 16-29 size, 30-31 direction. The struct size is part of the number, which is
 * why a caller whose struct definition has the wrong size gets ENOTTY: the kernel never sees "its" ioctl.
 */

export const IOC_NONE = 0;
export const IOC_WRITE = 1;
export const IOC_READ = 2;

const NRBITS = 8;
const TYPEBITS = 8;
const SIZEBITS = 14;
const NRSHIFT = 0;
const TYPESHIFT = NRSHIFT + NRBITS;
const SIZESHIFT = TYPESHIFT + TYPEBITS;
const DIRSHIFT = SIZESHIFT + SIZEBITS;

/** KVMIO, the ioctl "type" byte of every KVM ioctl. */
export const KVMIO = 0xae;

export type IocDir = 'none' | 'write' | 'read' | 'readwrite';

export function ioc(dir: number, type: number, nr: number, size: number): number {
  if (size < 0 || size >= 1 << SIZEBITS) throw new RangeError(`ioctl size ${size} does not fit in 14 bits`);
  return ((dir << DIRSHIFT) | (type << TYPESHIFT) | (nr << NRSHIFT) | (size << SIZESHIFT)) >>> 0;
}
export const io = (type: number, nr: number): number => ioc(IOC_NONE, type, nr, 0);
export const ior = (type: number, nr: number, size: number): number => ioc(IOC_READ, type, nr, size);
export const iow = (type: number, nr: number, size: number): number => ioc(IOC_WRITE, type, nr, size);
export const iowr = (type: number, nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, type, nr, size);

export interface DecodedIoc {
  dir: number;
  type: number;
  nr: number;
  size: number;
}

export function decodeIoc(cmd: number): DecodedIoc {
  return {
    dir: (cmd >>> DIRSHIFT) & 3,
    type: (cmd >>> TYPESHIFT) & 0xff,
    nr: (cmd >>> NRSHIFT) & 0xff,
    size: (cmd >>> SIZESHIFT) & ((1 << SIZEBITS) - 1),
  };
}

export function dirName(dir: number): IocDir {
  return (['none', 'write', 'read', 'readwrite'] as const)[dir & 3];
}

/** "0xc008ae67" style hex of a request number. */
export function cmdHex(cmd: number): string {
  return `0x${(cmd >>> 0).toString(16).padStart(8, '0')}`;
}
