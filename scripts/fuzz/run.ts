/**
 * One fuzz run: raw records (the corpus as captured, mutated, and made from nothing) through the record
 * target, then capture lines (the JSON of what was decoded, mutated) through `report`'s reader and model,
 * then whole garbled files through `report`. Deterministic for a seed and corpus.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Btf } from '../../src/btf/index.js';
import { btfTypeSource } from '../../src/btf/type-source.js';
import { ioctlByName } from '../../src/kvm/abi/ioctl-table.js';
import { fuzzReportFiles, JsonlFuzzTarget, mutateLine, type JsonlFuzzStats } from './jsonl.js';
import { mutate, randomRecord } from './mutate.js';
import { RecordFuzzTarget, type Finding, type RecordFuzzStats } from './records.js';
import { Rng } from './rng.js';

export interface FuzzOptions {
  btf: Btf;
  corpus: readonly Uint8Array[];
  /** Raw records to feed (default 1 000 000). */
  records?: number;
  /** Capture lines to feed `report` (default: as many as records). */
  lines?: number;
  /** Garbled capture files read by `report` (default 100). */
  files?: number;
  seed?: number;
  /** A progress line now and then. */
  progress?: (line: string) => void;
}

export interface FuzzResult {
  seed: number;
  records: RecordFuzzStats & { seconds: number; perSecond: number };
  lines: JsonlFuzzStats & { seconds: number; perSecond: number };
  files: { files: number; rejected: number };
  findings: Finding[];
  /** What the decoder keeps after the run (bounded state). */
  state: { processes: number; processesEvicted: number; heapMB: number };
}

export function runFuzz(opts: FuzzOptions): Promise<FuzzResult> {
  return fuzz(opts);
}

async function fuzz(opts: FuzzOptions): Promise<FuzzResult> {
  const seed = opts.seed ?? 1;
  const rng = new Rng(seed);
  const n = opts.records ?? 1_000_000;
  const corpus = opts.corpus;
  if (corpus.length === 0) throw new Error('empty fuzz corpus');
  const progress = opts.progress ?? (() => {});

  // 1. raw records
  const target = new RecordFuzzTarget(opts.btf);
  let t0 = performance.now();
  let next = t0 + 5000;
  for (let i = 0; i < n; i++) {
    const base = corpus[i % corpus.length];
    const roll = rng.int(20);
    const rec = roll < 7 ? base : roll < 16 ? mutate(base, corpus[rng.int(corpus.length)], rng) : randomRecord(rng);
    target.feed(rec);
    if ((i & 0xfff) === 0 && performance.now() > next) {
      next += 5000;
      progress(`records: ${i} (${Math.round(i / ((performance.now() - t0) / 1000))}/s), ${target.findings.size} findings`);
    }
  }
  target.finish();
  const recSeconds = (performance.now() - t0) / 1000;

  // 2. capture lines through report's reader and model
  const types = btfTypeSource(opts.btf);
  const model = { types, lookup: ioctlByName, lineSize: 64 };
  const jl = new JsonlFuzzTarget(model);
  const lines = target.jsonLines;
  const m = opts.lines ?? n;
  t0 = performance.now();
  next = t0 + 5000;
  for (let i = 0; i < m && lines.length > 0; i++) {
    const base = lines[i % lines.length];
    jl.feed(rng.chance(0.3) ? base : mutateLine(base, rng));
    if ((i & 0xfff) === 0 && performance.now() > next) {
      next += 5000;
      progress(`lines: ${i} (${Math.round(i / ((performance.now() - t0) / 1000))}/s), ${jl.findings.size} findings`);
    }
  }
  jl.render();
  const lineSeconds = (performance.now() - t0) / 1000;

  // 3. whole files through report
  const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-fuzz-'));
  let files: Awaited<ReturnType<typeof fuzzReportFiles>>;
  try {
    files = await fuzzReportFiles(lines, rng, lines.length > 0 ? (opts.files ?? 100) : 0, dir, model);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const findings = [...target.findings.values(), ...jl.findings.values(), ...files.findings].sort((a, b) => b.count - a.count);
  return {
    seed,
    records: { ...target.stats, seconds: recSeconds, perSecond: Math.round(n / recSeconds) },
    lines: { ...jl.stats, seconds: lineSeconds, perSecond: Math.round(m / lineSeconds) },
    files: { files: files.files, rejected: files.rejected },
    findings,
    state: {
      processes: target.decoder.procs.size,
      processesEvicted: target.decoder.procs.evicted,
      heapMB: Math.round(process.memoryUsage().heapUsed / 1048576),
    },
  };
}
