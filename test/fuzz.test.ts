// The fixed-seed fuzz run of npm test (issue 10; the long run is `npm run fuzz -- --records N`): raw
// records — a real capture of the reference guest where BPF is available, else the synthetic corpus,
// mutated and made from nothing — through the decoder and every stage after it, then mutated capture
// lines and garbled files through `report`. No stage may throw, every structurally bad record is counted
// as a decode error (and no other), and every bad line or file is one file:line error.
import { describe, expect, it } from 'vitest';
import { Btf } from '../src/btf/index.js';
import { recordCorpus, syntheticCorpus } from '../scripts/fuzz/corpus.js';
import { runFuzz } from '../scripts/fuzz/run.js';
import { bpfSkipReason } from './bpf-support.js';

const SEED = 20261203;

describe('fuzz (fixed seed)', () => {
  it('30 000 records, 30 000 capture lines and 40 files: no finding, every bad record counted', async () => {
    const noBpf = bpfSkipReason();
    if (noBpf) console.log(`fuzz: synthetic corpus only (${noBpf})`);
    const corpus = [...(noBpf ? [] : await recordCorpus(20)), ...syntheticCorpus()];
    const r = await runFuzz({ btf: Btf.vmlinux(), corpus, records: 30_000, lines: 30_000, files: 40, seed: SEED });
    const report = r.findings.map((f) => `${f.count}× ${f.key}\n${f.hex}\n${f.stack ?? ''}`).join('\n\n');
    expect(r.findings, report).toEqual([]);
    expect(r.records.bad).toBeGreaterThan(1000);
    expect(r.records.decodeErrors).toBe(r.records.bad);
    expect(r.records.outputs).toBeGreaterThan(10_000);
    expect(r.lines.rejected).toBeGreaterThan(1000);
    expect(r.lines.records).toBeGreaterThan(1000);
    expect(r.lines.renders).toBeGreaterThan(5);
    expect(r.files.rejected).toBeGreaterThan(0);
    expect(r.files.rejected).toBeLessThanOrEqual(r.files.files);
  });
});
