/**
 * Standalone BPF attach, without the decoder or the CLI: load + attach a KvmTracer, drain the ring with the
 * project's mmap consumer (every 20 ms and on threshold wakeups; counting records, not decoding them),
 * stop on SIGINT, SIGTERM or
 * --duration, print stats. It exists to measure the kernel side's cost on its own and for the bpf tests'
 * teardown checks (a real process receiving real signals). Not the product's attach command.
 *
 *   node dist/scripts/bpf-standalone.js [-p PID]... [-c COMM] [--strategy S] [--ring BYTES] [--duration S]
 *                                   [--drain-ms MS] [--object FILE.bpf.o] [--programs A,B]
 *                                   [--hooks fentry,kprobe] [--aggregate] [--hw-exits] [--throw-after-attach]
 * stdout: one JSON line {"attached":…,"strategy","programs","hooks","ids"} once attached, one {"stats":…} at
 * the end.
 * Importing it runs nothing: `run(argv)` does (the teardown test imports it as root, then drops root).
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { RingBufferConsumer } from '../src/ringbuf/index.js';
import type { HookFamily, StrategyOption } from '../src/bpf/programs.js';
import { KvmTracer } from '../src/bpf/tracer.js';

interface Args {
  pids: number[];
  comm?: string;
  strategy?: StrategyOption;
  ringBytes?: number;
  durationS?: number;
  throwAfterAttach: boolean;
  aggregate: boolean;
  hwExits: boolean;
  drainMs: number;
  objectPath?: string;
  programs?: string[];
  hookFamilies?: HookFamily[];
}

function parse(argv: string[]): Args {
  const a: Args = { pids: [], throwAfterAttach: false, aggregate: false, hwExits: false, drainMs: 20 };
  for (let i = 0; i < argv.length; i++) {
    const v = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new RangeError(`${argv[i - 1]} needs a value`);
      return next;
    };
    switch (argv[i]) {
      case '-p':
        a.pids.push(Number(v()));
        break;
      case '-c':
        a.comm = v();
        break;
      case '--strategy':
        a.strategy = v() as StrategyOption;
        break;
      case '--ring':
        a.ringBytes = Number(v());
        break;
      case '--duration':
        a.durationS = Number(v());
        break;
      case '--drain-ms':
        a.drainMs = Number(v());
        break;
      case '--programs':
        a.programs = v().split(',');
        break;
      case '--object':
        a.objectPath = v();
        break;
      case '--hooks':
        a.hookFamilies = v().split(',') as HookFamily[];
        break;
      case '--aggregate':
        a.aggregate = true;
        break;
      case '--hw-exits':
        a.hwExits = true;
        break;
      case '--throw-after-attach':
        a.throwAfterAttach = true;
        break;
      default:
        throw new RangeError(`unknown argument ${argv[i]}`);
    }
  }
  return a;
}

function main(argv: string[]): void {
  const args = parse(argv);
  const tracer = KvmTracer.open({
    pids: args.pids,
    comm: args.comm,
    strategy: args.strategy,
    ringBytes: args.ringBytes,
    objectPath: args.objectPath,
    programs: args.programs,
    aggregate: args.aggregate,
    hwExits: args.hwExits,
    hookFamilies: args.hookFamilies,
    log: (line) => process.stderr.write(`kvm-trace bpf: ${line}\n`),
  });
  let records = 0;
  let bytes = 0;
  const ring = new RingBufferConsumer(tracer.ringMapFd, tracer.ringBytes, {
    intervalMs: args.drainMs,
    onRecord: (_view, _off, len) => {
      records++;
      bytes += len;
    },
  });
  const out = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
  let stopped = false;
  const stop = (why: string): void => {
    if (stopped) return;
    stopped = true;
    const stats = tracer.stats();
    const runtime = tracer.programRuntime().filter((p) => p.runCount > 0);
    ring.close();
    tracer.close();
    out({ stopped: why, records, bytes, wakeups: ring.stats.wakeups, drains: ring.stats.drains, stats, runtime });
  };
  // Handlers first: whoever reads "attached" may signal at once.
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  if (args.durationS !== undefined) setTimeout(() => stop('duration'), args.durationS * 1000);
  out({
    attached: true,
    strategy: tracer.strategy,
    reason: tracer.reason,
    programs: tracer.programs,
    hooks: tracer.hooks,
    ids: tracer.ids(),
  });
  // Teardown test: an uncaught error with everything attached and the consumer running. Node exits at
  // once; KvmTracer's process 'exit' hook closes the tracer (and the kernel would free it with the fds).
  if (args.throwAfterAttach) setImmediate(() => {
    throw new Error('thrown after attach (teardown test)');
  });
}

/** Attach with these arguments; a failure to attach is one line on stderr and exit code 1. */
export function run(argv: string[]): void {
  try {
    main(argv);
  } catch (err) {
    process.stderr.write(`kvm-trace bpf: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

// Run when started as a script; imported (the teardown test drops root after loading it), only export.
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) run(process.argv.slice(2));
