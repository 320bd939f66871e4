/**
 * `npm run soak -- [--exits N] [--mode full|aggregate|otlp-stall|all] [--vcpus V] [--interval S]
 *                  [--warmup F] [--ring-mb N] [--dir DIR] [--keep]`
 *
 * Issue 10's soak: the reference guest traced by `kvm-trace attach` for N exits (default 10 000 000) in each
 * mode (scripts/soak/run.ts says what each does), the tracer's RSS printed every few seconds, then per mode:
 * exits, records lost, decode errors, RSS max and its slope after warm-up (MB per million exits; the
 * target is < 1). Exits 1 when anything was lost or RSS kept growing. Not part of npm test: 10 M exits take
 * a few minutes per mode.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessSet } from './bench/procs.js';
import { runSoak, SOAK_MODES, type SoakMode, type SoakResult } from './soak/run.js';

interface Args {
  exits: number;
  modes: SoakMode[];
  vcpus: number;
  intervalS: number;
  warmup: number;
  dir?: string;
  keep: boolean;
  ringMb?: number;
}

function parse(argv: string[]): Args {
  const a: Args = { exits: 10_000_000, modes: ['full'], vcpus: 1, intervalS: 5, warmup: 0.2, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new RangeError(`${argv[i - 1]} needs a value`);
      return x;
    };
    const num = (name: string, min: number, max: number): number => {
      const x = Number(v());
      if (!Number.isFinite(x) || x < min || x > max) throw new RangeError(`${name} must be a number from ${min} to ${max}`);
      return x;
    };
    switch (argv[i]) {
      case '--exits':
        a.exits = Math.round(num('--exits', 1000, 1e10));
        break;
      case '--mode': {
        const m = v();
        if (m === 'all') a.modes = [...SOAK_MODES];
        else if ((SOAK_MODES as readonly string[]).includes(m)) a.modes = [m as SoakMode];
        else throw new RangeError(`--mode is one of ${SOAK_MODES.join(', ')}, all`);
        break;
      }
      case '--vcpus':
        a.vcpus = Math.round(num('--vcpus', 1, 64));
        break;
      case '--interval':
        a.intervalS = num('--interval', 0.2, 600);
        break;
      case '--warmup':
        a.warmup = num('--warmup', 0, 0.9);
        break;
      case '--ring-mb':
        a.ringMb = Math.round(num('--ring-mb', 1, 1024));
        break;
      case '--dir':
        a.dir = v();
        break;
      case '--keep':
        a.keep = true;
        break;
      default:
        throw new RangeError(`unknown argument ${argv[i]} (see the header of scripts/soak.ts)`);
    }
  }
  return a;
}

function verdict(r: SoakResult): string {
  const slope = r.rss.slopeMBPerM === null ? 'n/a' : `${r.rss.slopeMBPerM >= 0 ? '+' : ''}${r.rss.slopeMBPerM.toFixed(3)} MB per million exits`;
  const lines = [
    `${r.mode}: ${r.tracedRuns} of ${r.guestRuns} KVM_RUNs traced in ${r.seconds.toFixed(0)} s, lost ${r.lost}, decode errors ${r.decodeErrors}` +
      (r.records !== null ? `, ${r.records} records (${(r.fileBytes! / 1e9).toFixed(2)} GB) written` : ''),
    `  RSS max ${r.rss.maxMB.toFixed(1)} MB; after warm-up ${r.rss.warmMB.toFixed(1)} → ${r.rss.endMB.toFixed(1)} MB, slope ${slope} (${r.rss.fitted} samples)`,
  ];
  if (r.otel) lines.push(`  ${r.otel}`);
  lines.push(r.problems.length ? `  FAILED: ${r.problems.join('; ')}` : '  ok');
  return lines.join('\n');
}

async function main(): Promise<number> {
  const a = parse(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('the soak attaches BPF programs: run it as root');
  const dir = a.dir ?? mkdtempSync(join(tmpdir(), 'kvm-trace-soak-'));
  const procs = new ProcessSet();
  const onSignal = (): void => {
    void procs.stopAll(5000).then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.on('exit', () => procs.killAllSync());
  const say = (l: string): void => void process.stdout.write(`${l}\n`);
  const results: SoakResult[] = [];
  try {
    for (const mode of a.modes) {
      results.push(await runSoak({ mode, exits: a.exits, vcpus: a.vcpus, intervalS: a.intervalS, warmup: a.warmup, dir, keep: a.keep, ringMb: a.ringMb, say }, procs));
      say(verdict(results.at(-1)!));
    }
  } finally {
    await procs.stopAll(5000);
    if (!a.dir && !a.keep) rmSync(dir, { recursive: true, force: true });
  }
  say('\n--- soak ---');
  for (const r of results) say(verdict(r));
  return results.some((r) => r.problems.length > 0) ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`kvm-trace soak: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
