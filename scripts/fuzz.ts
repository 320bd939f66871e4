/**
 * `npm run fuzz -- [--records N] [--seed S] [--lines N] [--files N] [--corpus real|synthetic]`: the long
 * fuzz run of issue 10 (a short fixed-seed run is in npm test: test/fuzz.test.ts). Feeds N raw records —
 * a real capture of the reference guest as the kernel wrote it (when this process may load BPF; else the
 * synthetic corpus), mutated, and made from nothing — through the decoder and every stage after it, then
 * capture lines and garbled files through `report`. Prints records/s, lines/s, every finding (where it was
 * thrown, how often, the first record's bytes) and exits 1 when there is any.
 */
import { Btf } from '../src/btf/index.js';
import { recordCorpus, syntheticCorpus } from './fuzz/corpus.js';
import { runFuzz } from './fuzz/run.js';

function args(argv: string[]): { records: number; seed: number; lines?: number; files: number; corpus?: string } {
  const out = { records: 1_000_000, seed: Date.now() % 0x7fffffff, files: 200 } as { records: number; seed: number; lines?: number; files: number; corpus?: string };
  for (let i = 0; i < argv.length; i++) {
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new RangeError(`${argv[i - 1]} needs a value`);
      return x;
    };
    const count = (name: string): number => {
      const x = Number(v());
      if (!Number.isInteger(x) || x < 0) throw new RangeError(`${name} must be a whole number`);
      return x;
    };
    switch (argv[i]) {
      case '--records':
        out.records = count('--records');
        break;
      case '--seed':
        out.seed = count('--seed');
        break;
      case '--lines':
        out.lines = count('--lines');
        break;
      case '--files':
        out.files = count('--files');
        break;
      case '--corpus':
        out.corpus = v();
        if (out.corpus !== 'real' && out.corpus !== 'synthetic') throw new RangeError('--corpus is real or synthetic');
        break;
      default:
        throw new RangeError(`unknown argument ${argv[i]} (see the header of scripts/fuzz.ts)`);
    }
  }
  return out;
}

async function main(): Promise<number> {
  const a = args(process.argv.slice(2));
  const say = (l: string): void => void process.stdout.write(`${l}\n`);
  let corpus = syntheticCorpus();
  if (a.corpus !== 'synthetic') {
    try {
      const real = await recordCorpus();
      say(`corpus: ${real.length} records of a real capture of the reference guest, + ${corpus.length} synthetic`);
      corpus = [...real, ...corpus];
    } catch (e) {
      if (a.corpus === 'real') throw e;
      say(`corpus: ${corpus.length} synthetic records (no real capture: ${(e as Error).message.split('\n')[0]})`);
    }
  }
  say(`seed ${a.seed}: ${a.records} records, ${a.lines ?? a.records} capture lines, ${a.files} files`);
  const r = await runFuzz({ btf: Btf.vmlinux(), corpus, records: a.records, lines: a.lines, files: a.files, seed: a.seed, progress: say });
  say(`records: ${r.records.records} in ${r.records.seconds.toFixed(1)} s = ${r.records.perSecond} records/s; ${r.records.bad} structurally bad, ${r.records.decodeErrors} counted as decode errors; ${r.records.outputs} JSONL records out`);
  say(`report lines: ${r.lines.lines} in ${r.lines.seconds.toFixed(1)} s = ${r.lines.perSecond} lines/s; ${r.lines.rejected} rejected with file:line, ${r.lines.records} read, ${r.lines.renders} models rendered`);
  say(`report files: ${r.files.files}, ${r.files.rejected} rejected with one file:line line`);
  say(`decoder state after the run: ${r.state.processes} processes (${r.state.processesEvicted} evicted), heap ${r.state.heapMB} MB`);
  say(`findings: ${r.findings.length}`);
  for (const f of r.findings) {
    say(`\n[${f.count}×] ${f.key}`);
    say(`  first: type ${f.type}, ${f.len} bytes`);
    for (const l of f.hex.split('\n').slice(0, 8)) say(`    ${l}`);
    if (f.stack) for (const l of f.stack.split('\n').slice(0, 6)) say(`  ${l.trim()}`);
  }
  return r.findings.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`kvm-trace fuzz: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
