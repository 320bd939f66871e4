/**
 * `kvm-trace top`: a live, kvm_stat-like view of KVM exits and ioctls per process and vCPU, built on the
 * in-kernel aggregate (no per-call records). Interactive on a terminal; a plain frame per interval on a
 * pipe; `-1` one snapshot; `--log INTERVAL` one line per interval; `--csv` / `--json` for either. Bad input
 * is one line and a non-zero exit; the terminal is restored and the BPF side released on every path.
 */
import { existsSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { stopSignal } from '../../capture/stop-signal.js';
import { AggregateSource } from '../../top/aggregate-source.js';
import { runTop, type TopMode } from '../../top/run-top.js';
import { Screen } from '../../top/screen.js';
import { CliError } from '../errors.js';
import { pidArg } from '../arg-parsers.js';
import type { CliIo } from '../io.js';
import { toCaptureError } from './capture-errors.js';

interface TopCliOptions {
  pid: number[];
  comm?: string;
  interval: number;
  once?: boolean;
  log?: number;
  csv?: boolean;
  json?: boolean;
  iterations?: number;
  hwExits?: boolean;
  verbose?: boolean;
}

function seconds(raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0.1 || n > 3600) throw new InvalidArgumentError(`'${raw}' is not a number of seconds from 0.1 to 3600`);
  return n;
}

function count(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`'${raw}' is not a positive integer`);
  return n;
}

export function register(program: Command, io: CliIo): void {
  program
    .command('top')
    .description('Live view of KVM exits, ioctls and KVM_RUN latency per process and vCPU, counted in the kernel.')
    .option('-p, --pid <pid>', 'watch this process (repeatable); default: every process', pidArg, [])
    .option('-c, --comm <name>', 'watch only processes with this name (≤ 15 characters)')
    .option('-d, --interval <seconds>', 'refresh interval', seconds, 1)
    .option('-1, --once', 'print one snapshot (after one interval) and exit')
    .option('--log <seconds>', 'print one line per interval (kvm_stat -l style) until stopped', seconds)
    .option('--csv', 'CSV output (with -1 or --log; alone it means -1)')
    .option('--json', 'JSON output (with -1: one object; with --log: one object per line; alone it means -1)')
    .option('-n, --iterations <n>', 'stop after this many intervals (pipe and --log output)', count)
    .option('--hw-exits', 'also count in-kernel (hardware) exits, where the kernel emits kvm:kvm_exit (not PVM): one program run per hardware exit')
    .option('--verbose', "show libbpf's messages and the BPF object ids")
    .addHelpText(
      'after',
      `
Keys: q quit · space pause · s/S sort · i invert · p/c/v/e filter by pid/comm/vCPU/exit reason · x clear
      ↑/↓ select · Enter drill into a VM · Esc back · r reset totals · z hide idle rows · h help

Examples:
  kvm-trace top                                  every process with KVM fds
  kvm-trace top -p $(pidof qemu-system-x86_64)   one VMM: its vCPU rows are its own
  kvm-trace top -1 --json -p 1234                one snapshot as JSON
  kvm-trace top --log 5 --csv > exits.csv        one CSV line every 5 s`,
    )
    .action(async (o: TopCliOptions) => {
      if (o.csv && o.json) throw new CliError('usage', '--csv and --json exclude each other');
      if (o.once && o.log !== undefined) throw new CliError('usage', '-1 and --log exclude each other');
      for (const pid of o.pid) if (!existsSync(`/proc/${pid}`)) throw new CliError('input', `no process with id ${pid}`);
      const format = o.csv ? 'csv' : o.json ? 'json' : 'text';
      const mode: TopMode =
        o.log !== undefined ? 'log' : o.once || format !== 'text' ? 'once' : Screen.usable(io.stdout, process.stdin) ? 'screen' : 'batch';
      const stop = stopSignal({ signals: true });
      const warn = (line: string): void => void io.stderr.write(`kvm-trace: ${line}\n`);
      try {
        await runTop({
          openSource: () => AggregateSource.open({ pids: o.pid, comm: o.comm, hwExits: o.hwExits, log: warn, verbose: o.verbose }),
          intervalS: o.log ?? o.interval,
          mode,
          format,
          iterations: o.iterations,
          signal: stop.signal,
          stdout: io.stdout,
          stdin: process.stdin,
          log: warn,
          verbose: o.verbose,
        });
      } catch (err) {
        throw toCaptureError(err);
      } finally {
        stop.dispose();
      }
    });
}
