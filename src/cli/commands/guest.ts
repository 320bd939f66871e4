/**
 * `kvm-trace guest`: run the reference guest (src/guest) and print what it did: exit counts per vCPU,
 * ioctls issued, where each kvm_run lives, the layout scenario's verdict, long-mode support. `--json` prints
 * one object; `--log FILE.jsonl` writes the ground truth a capture is checked against.
 */
import type { Command } from 'commander';
import { SyscallError } from '../../ffi/errors.js';
import { DEFAULT_EXITS, GuestAborted, GuestFault, GuestUsageError, runGuest, SCENARIO_CHOICES, type GuestResult } from '../../guest/index.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';

interface GuestCliOptions {
  scenario: string;
  vcpus: string;
  exits: string;
  log?: string;
  json?: boolean;
  kvmDev?: string;
  longMode: boolean;
}

const intArg = (flag: string, s: string): number => {
  if (!/^\d+$/.test(s.trim())) throw new CliError('usage', `${flag} must be a non-negative integer, got '${s}'`);
  return Number(s);
};

export function register(program: Command, io: CliIo): void {
  program
    .command('guest')
    .description('Run the reference guest through raw KVM ioctls (the ground truth captures are checked against).')
    .option('--scenario <name>', `one of ${SCENARIO_CHOICES.join('|')}`, 'pio-out')
    .option('--vcpus <n>', 'vCPUs, each driven from its own thread', '1')
    .option('--exits <n>', 'loop exits per vCPU and scenario', String(DEFAULT_EXITS))
    .option('--log <file>', 'write the ground-truth log (JSONL) to FILE')
    .option('--json', 'print the result as one JSON object')
    .option('--kvm-dev <path>', 'KVM device (default $KVM_TRACE_KVM_DEV or /dev/kvm)')
    .option('--no-long-mode', 'skip the 64-bit long-mode probe')
    .addHelpText('after', '\nExamples:\n  kvm-trace guest --scenario pio-out --exits 10000 --json\n  kvm-trace guest --scenario mixed --vcpus 4 --log truth.jsonl\n  kvm-trace guest --scenario layout --json')
    .action(async (o: GuestCliOptions) => {
      const ac = new AbortController();
      const stop = (): void => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        const res = await runGuest(
          { scenario: o.scenario, vcpus: intArg('--vcpus', o.vcpus), exits: intArg('--exits', o.exits), log: o.log, kvmDevice: o.kvmDev, probeLongMode: o.longMode },
          ac.signal,
        );
        io.stdout.write(o.json ? `${JSON.stringify(res)}\n` : text(res));
      } catch (err) {
        throw toCliError(err, o.kvmDev);
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}

function toCliError(err: unknown, dev?: string): unknown {
  if (err instanceof CliError) return err;
  if (err instanceof GuestUsageError) return new CliError('usage', err.message);
  if (err instanceof GuestFault) return new CliError('guest', err.message);
  if (err instanceof GuestAborted) return new CliError('guest', 'guest run interrupted', { exitCode: 130 });
  if (err instanceof SyscallError && err.op.startsWith('open ')) {
    const path = err.op.slice(5) || dev;
    const why = err.code === 'ENOENT' ? 'no such device (is KVM enabled on this host?)' : err.code === 'EACCES' ? 'permission denied (run as root or join the kvm group)' : err.code;
    return new CliError('kvm', `cannot open KVM device ${path}: ${why}`);
  }
  if (err instanceof SyscallError) return new CliError('kvm', err.message);
  return err;
}

function text(r: GuestResult): string {
  const counts = (c: Record<string, number>): string => Object.entries(c).map(([k, n]) => `${k}=${n}`).join(' ') || 'none';
  const lines = [
    `guest: ${r.scenarios.join(', ')} on ${r.vcpus} vCPU${r.vcpus > 1 ? 's' : ''}: exits ${counts(r.exits)}; ${r.ioctls} ioctls in ${r.elapsed_s.toFixed(3)} s`,
    ...r.per_vcpu.map(
      (v) => `  vCPU ${v.vcpu}: tid ${v.tid}, fd ${v.fd}, kvm_run at ${v.user_addr}, exits ${counts(v.exits)}` + (v.us_per_exit !== null ? `, ${v.us_per_exit.toFixed(2)} µs/exit` : ''),
    ),
  ];
  if (r.layout) lines.push(`  layout: ${r.layout.verdict}`);
  lines.push(`  64-bit long mode: ${r.long_mode ? 'yes' : 'no'} (${r.long_mode_detail})`);
  if (r.log) lines.push(`  ground truth: ${r.log}`);
  return lines.join('\n') + '\n';
}
