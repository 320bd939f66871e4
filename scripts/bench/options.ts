/**
 * Command-line options of `npm run bench` (scripts/bench.ts). Parsing only: commander turns argv into a
 * checked BenchOptions or throws a usage error.
 */
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ALL_WORKLOADS, type WorkloadId } from './workloads.js';
import type { TracerId } from './tracers.js';

const ALL_TRACERS: TracerId[] = ['untraced', 'kvm-trace', 'kvm-trace-lean', 'kvm-trace-binary', 'kvm-trace-aggregate', 'kvm-trace-top', 'strace', 'perf-trace', 'bpftrace', 'bpftrace-count'];

export interface BenchOptions {
  json: boolean;
  rounds: number;
  exits: number;
  smoke: boolean;
  withPeers: boolean;
  peers: boolean;
  /** Workloads to run (null = default set). */
  workloads: WorkloadId[] | null;
  /** Tracers to run besides untraced (null = all available). */
  tracers: TracerId[] | null;
  /** Bounds of the throughput rows: seconds of drain/decode time, or this many records, whichever first. */
  throughputSeconds: number;
  throughputRecords: number;
  /** Run kvm-trace under `node --cpu-prof`, profiles kept in this directory. */
  cpuProf: string | null;
}

function positiveInt(name: string, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`${name} must be an integer 1..${max}`);
    return n;
  };
}

function listOf<T extends string>(all: readonly T[], what: string) {
  return (v: string): T[] => {
    const items = v.split(',').map((s) => s.trim()).filter(Boolean);
    for (const i of items) {
      if (!all.includes(i as T)) throw new InvalidArgumentError(`unknown ${what} "${i}" (one of: ${all.join(', ')})`);
    }
    return items as T[];
  };
}

export function benchCommand(): Command {
  return new Command('bench')
    .description(
      'Tracing overhead of kvm-trace next to strace, perf trace and bpftrace on KVM exit loops (interleaved rounds, ' +
        'ratio vs untraced in the same round), plus decoder and ring-buffer throughput.',
    )
    .option('--json', 'print one JSON object on stdout instead of the table')
    .option('--rounds <n>', 'interleaved rounds (default 5; 95 % intervals over them)', positiveInt('--rounds', 1000))
    .option('--exits <n>', 'exits per workload run, all vCPUs together (default 200000)', positiveInt('--exits', 100_000_000))
    .option('--smoke', 'tiny fast variant: few exits, 1 round, one workload, no peers (for tests)')
    .option('--with-peers', 'install strace, linux-perf and bpftrace first (apt-get, via scripts/bootstrap.mjs)')
    .option('--no-peers', 'do not run strace / perf trace / bpftrace even when installed')
    .option('--workloads <list>', `comma-separated subset of: ${ALL_WORKLOADS.join(', ')}`, listOf(ALL_WORKLOADS, 'workload'))
    .option('--cpu-prof <dir>', 'run kvm-trace attach under node --cpu-prof (profiles kept in DIR) and show its hottest functions')
    .option('--tracers <list>', `comma-separated subset of: ${ALL_TRACERS.slice(1).join(', ')}`, listOf(ALL_TRACERS, 'tracer'))
    .addHelpText(
      'after',
      `
Examples:
  npm run bench                         all workloads, 5 rounds, 200 000 exits, peers that are installed
  npm run bench -- --with-peers --json  install strace/perf/bpftrace, one JSON object on stdout
  npm run bench -- --smoke --json       the seconds-long variant npm test runs`,
    )
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stderr.write(s), writeErr: (s) => process.stderr.write(s) });
}

export function parseOptions(argv: string[]): BenchOptions {
  const cmd = benchCommand();
  cmd.parse(argv, { from: 'user' });
  const o = cmd.opts<{
    json?: boolean;
    rounds?: number;
    exits?: number;
    smoke?: boolean;
    withPeers?: boolean;
    peers: boolean;
    workloads?: WorkloadId[];
    tracers?: TracerId[];
    cpuProf?: string;
  }>();
  const smoke = Boolean(o.smoke);
  return {
    json: Boolean(o.json),
    smoke,
    rounds: o.rounds ?? (smoke ? 1 : 5),
    exits: o.exits ?? (smoke ? 2000 : 200_000),
    withPeers: Boolean(o.withPeers),
    peers: o.peers && !smoke,
    workloads: o.workloads ?? null,
    tracers: o.tracers ?? null,
    throughputSeconds: smoke ? 0.05 : 1,
    throughputRecords: smoke ? 200_000 : 4_000_000,
    cpuProf: o.cpuProf ? resolve(o.cpuProf) : null,
  };
}
