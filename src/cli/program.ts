/**
 * Builds the commander program. Each subcommand lives in src/cli/commands/<name>.ts and exports
 * `register(program, io)`; the command's action does its work through library functions that take the
 * streams and an AbortSignal, so tests can run commands in-process.
 */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { CliIo, Register } from './io.js';

const commandModules: Array<() => Promise<{ register: Register }>> = [
  // one line per subcommand, in the order `--help` lists them
  () => import('./commands/demo.js'),
  () => import('./commands/attach.js'),
  () => import('./commands/top.js'),
  () => import('./commands/guest.js'),
  () => import('./commands/report.js'),
  () => import('./commands/abi.js'),
];

function packageVersion(): string {
  // dist/src/cli/program.js and src/cli/program.ts both sit three levels below the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version as string;
    } catch {
      dir = dirname(dir);
    }
  }
  return '0.0.0';
}

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
  kvm-trace report trace.jsonl --format html -o report.html
  kvm-trace abi --struct kvm_run`,
  );
  return program;
}
