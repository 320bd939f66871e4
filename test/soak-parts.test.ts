// The soak's pure parts (scripts/soak/): the RSS verdict on a garbage-collected sawtooth — a flat floor
// fits ~0 MB per million exits, a leak its rate — and the capture-file follower counting records and
// KVM_RUN records across reads that split lines.
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rssMB, rssVerdict, type Sample } from '../scripts/soak/samples.js';
import { CaptureTail } from '../scripts/soak/tail.js';

/** A V8-like sawtooth: +1 MB per 20 000 exits, back to the floor every 2 M exits, plus `leak` MB per M. */
const sawtooth = (leak: number): Sample[] =>
  Array.from({ length: 60 }, (_, i) => {
    const exits = i * 170_000;
    return { t: i, exits, rssMB: 150 + (exits % 2_000_000) / 20_000 + (leak * exits) / 1e6 };
  });

describe('rssVerdict', () => {
  it.each([
    [0, 0],
    [0.5, 0.5],
    [3, 3],
  ])('a sawtooth leaking %d MB per million exits fits %d', (leak, want) => {
    const v = rssVerdict(sawtooth(leak), 2_000_000);
    expect(v.slopeMBPerM).toBeCloseTo(want, 1);
    expect(v.fitted).toBeGreaterThanOrEqual(3);
    expect(v.maxMB).toBeGreaterThan(240);
  });

  it('too few samples after warm-up: no slope', () => {
    expect(rssVerdict(sawtooth(0).slice(0, 3), 1e9).slopeMBPerM).toBeNull();
  });

  it('reads this process\u2019s RSS', () => {
    expect(rssMB(process.pid)).toBeGreaterThan(10);
    expect(rssMB(0x3fffffff)).toBeUndefined();
  });
});

describe('CaptureTail', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-soak-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('counts records and KVM_RUN records as the file grows, lines split across reads included', () => {
    const f = join(dir, 'c.jsonl');
    const t = new CaptureTail(f);
    expect(t.read()).toBe(0); // not there yet
    writeFileSync(f, '{"type":"ioctl","name":"KVM_RUN"}\n{"type":"ioctl","na');
    t.read();
    expect([t.records, t.runs]).toEqual([1, 1]);
    appendFileSync(f, 'me":"KVM_RUN"}\n{"type":"lost","count":7}\n{"type":"summary"}\n');
    t.read();
    expect([t.records, t.runs, t.lost]).toEqual([4, 2, 7]);
    expect(t.lastLine).toBe('{"type":"summary"}');
    t.close();
  });
});
