/**
 * The libc half of the koffi boundary: the handful of system calls kvm-trace makes directly.
 * Everything here returns plain numbers/bigints or throws SyscallError; nothing above src/ffi imports koffi.
 *
 * Pointers are bigint (koffi 3). ioctl is declared twice with fixed arity (pointer argument and integer
 * argument) instead of through koffi's variadic path, which is slower and cannot be called async.
 */
import koffi from 'koffi';
import { SyscallError } from './errors.js';

const libc = koffi.load('libc.so.6');

const c_open = libc.func('int open(const char *path, int flags, int mode)');
const c_close = libc.func('int close(int fd)');
const c_ioctl_ptr = libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']);
const c_ioctl_val = libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']);
const c_mmap = libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)');
const c_munmap = libc.func('int munmap(void *addr, size_t len)');
const c_gettid = libc.func('int gettid()');
const c_getpagesize = libc.func('int getpagesize()');

export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
const MAP_FAILED = 0xffffffffffffffffn;

/** A pointer for the C side: a raw address, or a Buffer/typed array whose own memory is passed. */
export type Ptr = bigint | Buffer | ArrayBufferView | null;

export function open(path: string, flags: number): number {
  const fd = c_open(path, flags, 0) as number;
  if (fd < 0) throw new SyscallError(`open ${path}`, koffi.errno());
  return fd;
}

export function close(fd: number): void {
  if ((c_close(fd) as number) < 0) throw new SyscallError('close', koffi.errno());
}

/** ioctl whose third argument is a pointer. Returns the (non-negative) result or throws. */
export function ioctlPtr(fd: number, request: number, arg: Ptr, name = 'ioctl'): number {
  const r = c_ioctl_ptr(fd, request, arg) as number;
  if (r < 0) throw new SyscallError(name, koffi.errno());
  return r;
}

/** ioctl whose third argument is an integer. Returns the (non-negative) result or throws. */
export function ioctlVal(fd: number, request: number, value: number | bigint, name = 'ioctl'): number {
  const r = c_ioctl_val(fd, request, value) as number;
  if (r < 0) throw new SyscallError(name, koffi.errno());
  return r;
}

/**
 * ioctl that reports failure as a negative errno instead of throwing: for hot loops (KVM_RUN) and for
 * callers that record every outcome (the reference guest's ground-truth log).
 */
export function ioctlRaw(fd: number, request: number, arg: Ptr | number): number {
  const r =
    typeof arg === 'number' ? (c_ioctl_val(fd, request, arg) as number) : (c_ioctl_ptr(fd, request, arg) as number);
  return r < 0 ? -koffi.errno() : r;
}

export function mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint {
  const p = koffi.address(c_mmap(addr === 0n ? null : addr, length, prot, flags, fd, offset));
  if (p === MAP_FAILED) throw new SyscallError('mmap', koffi.errno());
  return p;
}

export function munmap(addr: bigint, length: number): void {
  if ((c_munmap(addr, length) as number) < 0) throw new SyscallError('munmap', koffi.errno());
}

/** Zero-copy view over raw memory (e.g. an mmapped kvm_run or ring buffer). Valid until unmapped. */
export function memoryView(addr: bigint, length: number): ArrayBuffer {
  return koffi.view(addr, length);
}

/** Address of a Buffer's / typed array's memory, for building C structs that point into JS memory. */
export function addressOf(buf: ArrayBufferView): bigint {
  return koffi.address(buf);
}

export function gettid(): number {
  return c_gettid() as number;
}

export const PAGE_SIZE: number = c_getpagesize() as number;
