/**
 * libbpf.so.1 itself: loading it (once, lazily failing with a clear reason when Debian's libbpf1 is
 * missing), binding C declarations on first use, the handle brands, and libbpf 1.x's error convention —
 * pointer-returning calls give NULL and set errno, int-returning calls give -errno; both become
 * SyscallError here (op = the libbpf call). Handles are branded bigints so a map pointer cannot be passed
 * where a program is expected; koffi does not check pointers, this typing does.
 */
import koffi, { type LibraryHandle } from 'koffi';
import { SyscallError } from '../errors.js';

export type BpfObjectPtr = bigint & { readonly __brand: 'bpf_object' };
export type BpfProgramPtr = bigint & { readonly __brand: 'bpf_program' };
export type BpfMapPtr = bigint & { readonly __brand: 'bpf_map' };
export type BpfLinkPtr = bigint & { readonly __brand: 'bpf_link' };
export type RingBufferPtr = bigint & { readonly __brand: 'ring_buffer' };

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

/** A bound libbpf function; results are narrowed with `as` at each wrapper. */
export type Fn = (...args: unknown[]) => unknown;

/**
 * The functions declared in `decls` (name → C prototype), bound on the first call, so importing a module
 * never needs libbpf.so.1: only using it does (and then throws libbpfUnavailable()'s reason).
 */
export function bindLibbpf<K extends string>(decls: Record<K, string>): () => Record<K, Fn> {
  let bound: Record<K, Fn> | undefined;
  return () => {
    if (bound) return bound;
    if (!lib) throw new Error(libbpfUnavailable());
    const l = lib;
    bound = Object.fromEntries(Object.entries<string>(decls).map(([k, d]) => [k, l.func(d) as Fn])) as Record<K, Fn>;
    return bound;
  };
}

/** The address a koffi pointer result stands for (a bigint already, or an external). */
export function address(value: unknown): bigint {
  return typeof value === 'bigint' ? value : koffi.address(value);
}

/** True for a NULL pointer result. */
export function isNull(value: unknown): boolean {
  return value === null || value === undefined || value === 0n;
}

/** A pointer result: NULL (null or 0n) → SyscallError with the errno libbpf set. */
export function ptr<T extends bigint>(op: string, value: unknown): T {
  if (isNull(value)) {
    const errno = koffi.errno();
    throw new SyscallError(op, errno > 0 ? errno : 22 /* EINVAL: libbpf failed without errno */);
  }
  return address(value) as T;
}

/** An int result: negative → SyscallError(-result). */
export function check(op: string, r: number): number {
  if (r < 0) throw new SyscallError(op, -r);
  return r;
}
