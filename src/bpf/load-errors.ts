/**
 * How loading and attaching fail, as one clear line each: BpfLoadError carries libbpf's log (the verifier's
 * included) for a failed load; attachError names the program and libbpf's last word about it.
 */
import { NotSupportedError, SyscallError } from '../ffi/errors.js';

/** Loading failed (verifier, relocation): carries libbpf's log, including the verifier's. */
export class BpfLoadError extends Error {
  readonly libbpfLog: string;
  constructor(message: string, libbpfLog: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BpfLoadError';
    this.libbpfLog = libbpfLog;
  }
}

/** A program that could not attach: NotSupportedError when the kernel lacks the hook (EOPNOTSUPP, ENOENT). */
export function attachError(name: string, err: unknown, libbpfLog: string[]): Error {
  const last = libbpfLog.filter((l) => l.includes(name)).pop();
  const msg = `attaching ${name} failed: ${(err as Error).message}${last ? ` (libbpf: ${last.trim()})` : ''}`;
  if (err instanceof SyscallError && (err.errno === 95 || err.errno === 2)) return new NotSupportedError(msg, { cause: err });
  return new Error(msg, { cause: err });
}

/** The verifier's own lines of a failed load (libbpf wraps them in BEGIN/END PROG LOAD LOG). */
export function verifierTail(lines: string[], max = 60): string[] {
  const text = lines.join('\n').split('\n');
  return text.slice(-max).map((l) => `libbpf: ${l}`);
}
