/**
 * `kvm-trace demo --json` end to end (the README's main command): the capture must reproduce the
 * reference guest's ground truth exactly, lose nothing, and score precision and recall 1.0 for both
 * buffer flags on the `layout` scenario's deliberately placed buffers; the HTML report is written.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bpfSkipReason } from './bpf-support.js';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const skip = bpfSkipReason();
if (skip) console.log(`demo tests skipped: ${skip}`);
const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(skip !== undefined)('kvm-trace demo', () => {
  it('reproduces the ground truth and scores both flags 1.0 on the layout scenario', () => {
    const r = spawnSync(process.execPath, [cli, 'demo', '--json', '--exits', '300', '--vcpus', '2', '--out', dir], { encoding: 'utf8' });
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.status).toBe(0);
    const d = JSON.parse(r.stdout) as {
      issued: number;
      captured: number;
      matched: number;
      lost: number;
      perfect: boolean;
      flags: {
        precision: number;
        recall: number;
        buffers: number;
        misaligned: { precision: number; recall: number; tp: number };
        cacheline_cross: { precision: number; recall: number; tp: number };
      };
      files: { report_html: string; capture: string };
    };
    expect(d.issued).toBeGreaterThan(1000);
    expect(d.captured).toBe(d.issued);
    expect(d.matched).toBe(d.issued);
    expect(d.lost).toBe(0);
    expect(d.perfect).toBe(true);
    expect(d.flags.buffers).toBeGreaterThan(50);
    for (const f of [d.flags.misaligned, d.flags.cacheline_cross]) {
      expect(f.tp).toBeGreaterThan(10);
      expect(f.precision).toBe(1);
      expect(f.recall).toBe(1);
    }
    expect(existsSync(d.files.report_html)).toBe(true);
    expect(readFileSync(d.files.report_html, 'utf8')).toContain('<svg');
    const last = readFileSync(d.files.capture, 'utf8').trim().split('\n').at(-1)!;
    expect(JSON.parse(last).type).toBe('summary');
  });

  it('an unknown scenario is one line and a non-zero exit', () => {
    const r = spawnSync(process.execPath, [cli, 'demo', '--scenario', 'nope', '--out', dir], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim().split('\n').length).toBe(1);
    expect(r.stderr).toMatch(/nope/);
  });
});
