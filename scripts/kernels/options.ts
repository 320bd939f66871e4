/**
 * Command-line options of `npm run test:kernels` (scripts/kernels/main.ts). Parsing only: commander turns
 * argv into checked MatrixOptions or throws a usage error.
 */
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { repoRoot } from '../bench/paths.js';
import { checkPackageName, DEFAULT_KERNELS, KernelFetchError } from './cache.js';

/** A usage mistake commander cannot see (conflicting flags). */
export class UsageError extends Error {}

export interface MatrixOptions {
  kernels: string[];
  /** No --kernel: the pinned defaults, each replaced by the newest of its line when the mirror dropped it. */
  pinned: boolean;
  /** Run this shell command inside each kernel instead of the checklist. */
  exec?: string;
  /** Folder the command runs in (inside the guest the host's paths are the same). */
  cwd: string;
  json: boolean;
  markdown: boolean;
  /** Add a row for the running kernel (the checklist run directly, no QEMU). */
  host: boolean;
  /** The kvm-trace checkout whose CLI the checklist runs (default: this one). */
  checkout: string;
  /** Render this saved `--json` output instead of running anything. */
  fromJson?: string;
  smp: number;
  memMb: number;
  exits: number;
  bootTimeoutS: number;
  jobTimeoutS: number;
}

function intIn(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer ${min}..${max}`);
    return n;
  };
}

function kernelArg(v: string, prev: string[] | undefined): string[] {
  try {
    checkPackageName(v);
  } catch (e) {
    if (e instanceof KernelFetchError) throw new InvalidArgumentError(e.message);
    throw e;
  }
  return [...(prev ?? []), v];
}

export function matrixCommand(): Command {
  return new Command('test:kernels')
    .description(
      "Boot Debian's kernels under QEMU (TCG; KVM as modules inside) and check kvm-trace on each: strategy, hooks, the demo " +
        'against ground truth, observed vs derived copies, abi --check, BPF objects left behind. Or run any command there (--exec).',
    )
    .option(
      '--kernel <pkg>',
      `Debian kernel package, exactly (repeatable; default ${DEFAULT_KERNELS.join(', ')}, each replaced by the newest of its line when neither cached nor downloadable)`,
      kernelArg,
    )
    .option('--exec <cmd>', "run this shell command inside each kernel (cwd as here); print its output, exit with its status")
    .option('--cwd <dir>', 'folder --exec runs in', process.cwd())
    .option('--json', 'print one JSON object on stdout instead of the table')
    .option('--markdown', 'print the table as Markdown (the README\'s "Supported kernels")')
    .option('--host', 'add a row for the running kernel (checklist run here, without QEMU)')
    .option('--checkout <dir>', "run the checklist with another kvm-trace checkout's built CLI (e.g. a branch's worktree)")
    .option('--from-json <file>', 'print the table (or --markdown) of a saved --json run; boots nothing')
    .option('--smp <n>', 'vCPUs of the emulated machine', intIn('--smp', 1, 8), 2)
    .option('--mem <mb>', 'memory of the emulated machine (MiB)', intIn('--mem', 512, 16384), 2048)
    .option('--exits <n>', 'exits per vCPU and scenario of the demo inside the guest (TCG: ≈ 90 µs per exit)', intIn('--exits', 1, 100000), 20)
    .option('--boot-timeout <s>', 'seconds until the guest root is ready', intIn('--boot-timeout', 5, 3600), 120)
    .option('--timeout <s>', 'seconds the checklist or the --exec command may run per kernel', intIn('--timeout', 5, 36000), 900)
    .addHelpText(
      'after',
      `
Examples:
  npm run test:kernels
  npm run test:kernels -- --json
  npm run test:kernels -- --kernel linux-image-6.12.111+deb12-amd64 --exec 'node dist/src/cli/main.js abi --check'
  npm run test:kernels -- --markdown --host

Kernels are cached in $KVM_TRACE_KERNEL_CACHE or /var/cache/kvm-trace/kernels (root) / ~/.cache/kvm-trace/kernels.
TCG emulates AMD SVM only: inside the guest kvm-amd is loaded; kvm-intel cannot be exercised this way.`,
    );
}

export function parseOptions(argv: string[]): MatrixOptions {
  const cmd = matrixCommand().exitOverride();
  cmd.parse(argv, { from: 'user' });
  const o = cmd.opts<{
    kernel?: string[];
    exec?: string;
    cwd: string;
    json?: boolean;
    markdown?: boolean;
    host?: boolean;
    fromJson?: string;
    checkout?: string;
    smp: number;
    mem: number;
    exits: number;
    bootTimeout: number;
    timeout: number;
  }>();
  if (o.json && o.markdown) throw new UsageError('--json and --markdown exclude each other');
  return {
    kernels: o.kernel ?? DEFAULT_KERNELS,
    pinned: o.kernel === undefined,
    exec: o.exec,
    cwd: o.cwd,
    json: !!o.json,
    markdown: !!o.markdown,
    host: !!o.host,
    fromJson: o.fromJson,
    checkout: resolve(o.checkout ?? repoRoot),
    smp: o.smp,
    memMb: o.mem,
    exits: o.exits,
    bootTimeoutS: o.bootTimeout,
    jobTimeoutS: o.timeout,
  };
}
