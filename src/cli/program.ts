/**
 * Builds the commander program. Each subcommand lives in src/cli/commands/<name>.ts and exports
 * `register(program, io)`; the command's action does its work through library functions that take the
 * streams and an AbortSignal, so tests can run commands in-process.
 */
import { Command } from 'commander';
import { packageVersion } from './version.js';
import type { CliIo, Register } from './io.js';

/** One line per subcommand, in the order `--help` lists them; `name` is what its module registers. */
const commandModules: Array<{ name: string; load: () => Promise<{ register: Register }> }> = [
  { name: 'demo', load: () => import('./commands/demo.js') },
  { name: 'attach', load: () => import('./commands/attach.js') },
  { name: 'top', load: () => import('./commands/top.js') },
  { name: 'guest', load: () => import('./commands/guest.js') },
  { name: 'decode', load: () => import('./commands/decode.js') },
  { name: 'report', load: () => import('./commands/report.js') },
  { name: 'abi', load: () => import('./commands/abi.js') },
];

/** The subcommands, in `--help` order (a test checks each module registers the name it is listed under). */
export const COMMAND_NAMES = commandModules.map((c) => c.name);

/**
 * The program. With `argv` (process.argv form) naming a subcommand, only that command's module is loaded:
 * each one pulls in its own stages (attach: BPF, ring buffer, decoder; report: renderers; …), and loading
 * all seven costs an attach ≈ 55 more files and 25-45 ms of CPU before it can start. Anything else (no
 * command, `help`, an unknown name, a global flag first) loads them all, so help and suggestions list every
 * command.
 */
export async function buildProgram(io: CliIo, argv?: readonly string[]): Promise<Command> {
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
  const named = argv && commandModules.find((c) => c.name === argv[2]);
  for (const c of named ? [named] : commandModules) (await c.load()).register(program, io);
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
