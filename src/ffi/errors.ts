/**
 * Errors raised at the syscall boundary. They carry the raw errno, its symbolic name and the operation
 * (for ioctls, the ioctl's name), following rust-vmm's "return the raw errno" rule: no invented taxonomy.
 */
import { constants } from 'node:os';

const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);
}

/** Symbolic name of an errno value ("ENOTTY"), or "E<number>" when the platform has no name for it. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/** Errno value of a symbolic name, or undefined. */
export function errnoValue(name: string): number | undefined {
  return (constants.errno as Record<string, number>)[name];
}

/** A failed system call: `op` is the call or ioctl name, `errno` the raw positive errno. */
export class SyscallError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly op: string;

  constructor(op: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    super(`${op}: ${code}${detail ? ` (${detail})` : ''}`);
    this.name = 'SyscallError';
    this.errno = errno;
    this.code = code;
    this.op = op;
  }
}

/** A kernel feature this machine does not offer (e.g. kprobes compiled out, fentry refused). */
export class NotSupportedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NotSupportedError';
  }
}
