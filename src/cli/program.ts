/**
 * Builds the commander program. Each subcommand lives in src/cli/commands/<name>.ts and exports
 * `register(program, io)`; the command's action does its work through library functions that take the
 * streams and an AbortSignal, so tests can run commands in-process.
 */
import { Command } from 'commander';
import { packageVersion } from './version.js';
import type { CliIo, Register } from './io.js';

const commandModules: Array<() => Promise<{ register: Register }>> = [
  // one line per subcommand, in the order `--help` lists them
  () => import('./commands/demo.js'),
  () => import('./commands/attach.js'),
  () => import('./commands/top.js'),
  () => import('./commands/guest.js'),
  () => import('./commands/decode.js'),
  () => import('./commands/report.js'),
  () => import('./commands/abi.js'),
];

export async function buildProgram(io: CliIo): Promise<Command> {
  const program = new Command('kvm-trace');
  program
    .description('Trace the KVM ioctls of VMM processes with eBPF: decoded, timed, with errno and kvm_run addresses.')
    .version(packageVersion(), '-V, --version')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const load of commandModules) (await load()).register(program, io);
  program.addHelpText(
    'after',
    `
Examples:
  kvm-trace demo                                    trace the reference guest through every scenario
  kvm-trace guest --scenario pio-out --exits 10000 --json
  kvm-trace attach -p $(pidof qemu-system-x86_64) -o trace.jsonl
  kvm-trace attach -p $(pidof qemu-system-x86_64) -w trace.ktcap
  kvm-trace decode trace.ktcap -o trace.jsonl
  kvm-trace report trace.jsonl --format html -o report.html
  kvm-trace abi --struct kvm_run`,
  );
  return program;
}
