/**
 * `npm run bench`: what kvm-trace costs a traced VMM, side by side with strace, perf trace and bpftrace,
 * measured on the reference guest's (and a C) KVM exit loop in interleaved rounds; plus ring-buffer drain
 * and decoder throughput, checked against the targets of issue 6. The table goes to stdout (or one JSON
 * object with --json), progress to stderr. The pieces live in scripts/bench/.
 *
 * This file is the bin: the only place that touches process.argv, signals and process.exit. Whatever
 * happens, every process the bench started is stopped (tracers with SIGINT so they detach) and its
 * temporary files are removed; a failure is one line on stderr and a non-zero exit.
 */
import { spawnSync } from 'node:child_process';
import { CommanderError } from 'commander';
import { parseOptions, type BenchOptions } from './bench/options.js';
import { bootstrapScript } from './bench/paths.js';
import { ProcessSet } from './bench/procs.js';
import { Progress } from './bench/progress.js';
import { buildJson } from './bench/report.js';
import { formatTable } from './bench/table.js';
import { runBench } from './bench/runner.js';

function installPeers(): void {
  // stdout stays clean for --json: the bootstrap's own output goes to stderr.
  const r = spawnSync(process.execPath, [bootstrapScript, '--bench', '--with-peers', '--no-build'], {
    stdio: ['ignore', process.stderr, process.stderr],
  });
  if (r.status !== 0) throw new Error('installing the peer tracers (strace, linux-perf, bpftrace) failed; see above');
}

async function main(): Promise<number> {
  let opts: BenchOptions;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (e) {
    // commander already printed help / version / the usage error
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  if (opts.withPeers) installPeers();

  const procs = new ProcessSet();
  const abort = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      process.stderr.write(`\nbench: ${sig}: stopping tracers and workloads…\n`);
      abort.abort();
      void procs.stopAll();
    } else {
      procs.killAllSync();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => procs.killAllSync());

  const progress = new Progress();
  const run = await runBench(opts, procs, { progress: (t) => progress.update(t), signal: abort.signal });
  progress.clear();
  const json = buildJson(run);
  process.stdout.write(opts.json ? `${JSON.stringify(json)}\n` : `${formatTable(json, run)}\n`);
  return run.aborted ? 130 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (process.env.KVM_TRACE_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? err}\n`);
    process.stderr.write(`\nbench: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}\n`);
    process.exitCode = 1;
  },
);
