#!/usr/bin/env node
/**
 * The `kvm-trace` binary: the only place that touches process.argv and process.exit. Every failure is one
 * line on stderr and a non-zero exit code; a stack trace only with KVM_TRACE_DEBUG=1.
 */
import { CommanderError } from 'commander';
import { buildProgram } from './program.js';
import { CliError, oneLine } from './errors.js';

async function main(): Promise<number> {
  const io = { stdout: process.stdout, stderr: process.stderr };
  try {
    const program = await buildProgram(io, process.argv);
    await program.parseAsync(process.argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message (help, version, or a usage error).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (process.env.KVM_TRACE_DEBUG) io.stderr.write(`${(err as Error)?.stack ?? err}\n`);
    io.stderr.write(`kvm-trace: ${oneLine(err)}\n`);
    return err instanceof CliError ? err.exitCode : 1;
  }
}

main().then((code) => {
  process.exitCode = code;
});
