/**
 * The CLI's one error class. Library code throws SyscallError / NotSupportedError / plain Errors; only the
 * CLI turns them into a code and one line. `usage` errors also print the command's usage hint.
 */
export type CliErrorCode = 'usage' | 'input' | 'permission' | 'unsupported' | 'kvm' | 'guest' | 'internal' | 'check';

export class CliError extends Error {
  readonly code: CliErrorCode;
  readonly exitCode: number;

  constructor(code: CliErrorCode, message: string, options?: { cause?: unknown; exitCode?: number }) {
    super(message, options);
    this.name = 'CliError';
    this.code = code;
    this.exitCode = options?.exitCode ?? (code === 'usage' ? 2 : 1);
  }
}

/** One line for any thrown value: the message of the error and of its causes, never a stack. */
export function oneLine(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e && depth < 4; depth++) {
    const msg = e instanceof Error ? e.message : String(e);
    if (msg && !parts.some((p) => p.includes(msg))) parts.push(msg);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ').replace(/\s*\n\s*/g, ' ');
}
