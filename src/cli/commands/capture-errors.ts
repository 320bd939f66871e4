/**
 * Turns the library's errors from loading/attaching BPF programs into the CLI's one-line errors with a
 * code: no root, no BTF, unsupported strategy, libbpf missing.
 */
import { NotSupportedError, SyscallError } from '../../ffi/errors.js';
import { CliError } from '../errors.js';

export function toCaptureError(err: unknown): unknown {
  if (err instanceof CliError) return err;
  if (err instanceof NotSupportedError) return new CliError('unsupported', err.message, { cause: err.cause });
  if (err instanceof SyscallError && (err.code === 'EPERM' || err.code === 'EACCES')) {
    return new CliError('permission', err.message);
  }
  return err;
}
