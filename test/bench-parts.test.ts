/**
 * The benchmark's pieces that decide its numbers, without running a benchmark: statistics, how a workload's
 * summary and a tracer's summary are read, which attach flag means "aggregate", the workload gate, and the
 * process set that must never leave a child behind.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { hotFunctions, newestProfile } from '../scripts/bench/cpu-profile.js';
import { ProcessSet } from '../scripts/bench/procs.js';
import { readSummary } from '../scripts/bench/run-sample.js';
import { atMost, meanCi, ratioCi, spread, t95 } from '../scripts/bench/stats.js';
import { aggregateFlag } from '../scripts/bench/tracers.js';
import { describeWorkload, gated, parseWorkloadOutput } from '../scripts/bench/workloads.js';

const dir = mkdtempSync(join(tmpdir(), 'bench-parts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('spread', () => {
  it.each([
    [[3, 1, 2], { median: 2, min: 1, max: 3, n: 3 }],
    [[4, 1, 3, 2], { median: 2.5, min: 1, max: 4, n: 4 }],
    [[5, null, undefined, Number.NaN], { median: 5, min: 5, max: 5, n: 1 }],
  ])('%j → %j', (values, want) => {
    expect(spread(values)).toEqual(want);
  });
  it('is null without finite values', () => expect(spread([null, Number.POSITIVE_INFINITY])).toBeNull());
});

describe('confidence intervals', () => {
  it('mean ± t·s/√n (95 %)', () => {
    const e = meanCi([1, 2, 3, 4, 5])!;
    expect(e.value).toBe(3);
    // s = √2.5, t(4) = 2.776
    expect(e.hi - e.value).toBeCloseTo((2.776 * Math.sqrt(2.5)) / Math.sqrt(5), 10);
    expect(e.value - e.lo).toBeCloseTo(e.hi - e.value, 12);
    expect(meanCi([7])).toEqual({ value: 7, lo: 7, hi: 7, n: 1 });
    expect(meanCi([null, Number.NaN])).toBeNull();
  });
  it('ratios: geometric mean, interval on the log scale (never below 0)', () => {
    const e = ratioCi([1.1, 1.21, 1.0])!;
    expect(e.value).toBeCloseTo(Math.cbrt(1.1 * 1.21 * 1.0), 12);
    expect(e.lo).toBeGreaterThan(0);
    expect(e.lo * e.hi).toBeCloseTo(e.value * e.value, 10); // symmetric in log
    expect(ratioCi([2, 2, 2])).toEqual({ value: 2, lo: 2, hi: 2, n: 3 });
  });
  it.each([
    [1, 12.706],
    [4, 2.776],
    [30, 2.042],
    [100, 1.96],
  ])('t95(%d) = %d', (df, t) => expect(t95(df)).toBe(t));
  it.each([
    [{ value: 1.05, lo: 1.02, hi: 1.08, n: 5 }, 1.1, 'pass'],
    [{ value: 1.05, lo: 1.0, hi: 1.12, n: 5 }, 1.1, 'inconclusive'],
    [{ value: 1.2, lo: 1.11, hi: 1.3, n: 5 }, 1.1, 'fail'],
  ] as const)('%j against %d → %s', (e, bound, v) => expect(atMost(e, bound)).toBe(v));
});

describe('parseWorkloadOutput', () => {
  it.each([
    ['{"exits":{"IO":200000,"HLT":1},"vcpus":1,"loop_s":1.5}', 200001, 1.5, 'loop'],
    [
      '{"exits":{"IO":4,"HLT":2},"elapsed_s":3,"per_vcpu":[{"scenarios":[{"loop_ns":5e8},{"loop_ns":1e8}]},{"scenarios":[{"loop_ns":4e8}]}]}',
      6,
      0.6,
      'loop',
    ],
    ['{"exits":{"IO":200000,"HLT":1},"vcpus":1,"elapsed_s":1.5}', 200001, 1.5, 'run'],
    ['noise\n{"vcpus":4,"exits":{"IO":8,"HLT":4},"elapsed_ms":250}\n', 12, 0.25, 'run'],
    ['{"exits":[{"IO":3},{"IO":4,"HLT":1}]}', 8, 9, 'wall'],
    ['{"exits":7,"elapsed_s":0}', 7, 9, 'wall'],
  ])('%j', (stdout, exits, elapsed, timing) => {
    expect(parseWorkloadOutput(stdout, 9)).toEqual({ exits, elapsed_s: elapsed, timing });
  });
  it('throws without a summary', () => expect(() => parseWorkloadOutput('{"x":1}\nhello', 1)).toThrow(/no JSON summary/));
});

describe('readSummary', () => {
  it('takes the last summary line of the -o file, skipping a torn first line of the tail window', () => {
    const f = join(dir, 'trace.jsonl');
    const body = Array.from({ length: 100 }, (_, i) => JSON.stringify({ type: 'ioctl', i })).join('\n');
    writeFileSync(f, `${body}\n{"type":"summary","events":100,"lost":0,"ioctls":{"KVM_RUN":{"count":98}}}\n`);
    expect(readSummary(f, '')).toMatchObject({ events: 100, lost: 0 });
  });
  it.each([
    ['{"type":"summary","events":5,"lost":1}\n', 5],
    ['attached\n{\n  "type": "summary",\n  "events": 6,\n  "lost": 0\n}\n', 6],
  ])('falls back to stdout: %j', (stdout, events) => {
    expect(readSummary(join(dir, 'absent.jsonl'), stdout)?.events).toBe(events);
  });
  it('is null without one', () => expect(readSummary(join(dir, 'absent.jsonl'), 'attached\n')).toBeNull());
});

describe('aggregateFlag', () => {
  it.each([
    ['  --aggregate        count in the kernel only', '--aggregate'],
    ['  --count-only       no per-event records', '--count-only'],
    ['  -o, --output <file>', null],
  ])('%j → %s', (help, flag) => expect(aggregateFlag(help)).toBe(flag));
});

describe('workloads', () => {
  it.each([
    ['guest-pio-4', 'guest', 'pio', 4],
    ['c-mmio-1', 'c', 'mmio', 1],
  ] as const)('%s', (id, kind, loop, vcpus) => {
    expect(describeWorkload(id)).toMatchObject({ kind, loop, vcpus });
  });
});

describe('cpu profile', () => {
  it('finds the profile node --cpu-prof wrote and ranks the busy function first', () => {
    const profDir = join(dir, 'prof');
    const since = Date.now() - 1000;
    const busy = 'function spinHere(){let x=0;const end=Date.now()+300;while(Date.now()<end)x+=Math.sqrt(x+1);return x} spinHere()';
    const r = spawnSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '-e', busy], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const file = newestProfile(profDir, since);
    expect(file).toMatch(/\.cpuprofile$/);
    const top = hotFunctions(file!, 3);
    expect(top.map((h) => h.fn)).toContain('spinHere');
    const spin = top.find((h) => h.fn === 'spinHere')!;
    expect(spin.self_pct).toBeGreaterThan(10);
    expect(top[0].self_pct).toBeGreaterThanOrEqual(top[top.length - 1].self_pct);
  });
});

describe('ProcessSet', () => {
  it('the gate holds the workload until a line arrives, and exec keeps the pid', async () => {
    const procs = new ProcessSet();
    const t = procs.spawn('gate', ...splitArgv(gated(['/bin/sh', '-c', 'echo pid=$$'])), { stdin: 'pipe' });
    await new Promise((r) => setTimeout(r, 100));
    expect(t.done).toBe(false);
    t.child.stdin?.end('\n');
    const exit = await t.exited;
    expect(exit.code).toBe(0);
    expect(t.stdout().trim()).toBe(`pid=${t.pid}`);
  });

  it('stop() sends the signal, and SIGKILLs the whole group when it is ignored', async () => {
    const procs = new ProcessSet();
    const polite = procs.spawn('polite', 'sleep', ['30']);
    const r1 = await procs.stop(polite, 'SIGINT', 5_000);
    expect(r1).toMatchObject({ killed: false, exit: { signal: 'SIGINT' } });

    // A wrapper that ignores SIGINT, with a child: both must be gone after stop().
    const stubborn = procs.spawn('stubborn', '/bin/sh', ['-c', "trap '' INT; sleep 30 & echo $!; wait"], { gentle: true });
    await stubborn.waitFor('stdout', /^\d+$/m, 5_000);
    const childPid = Number(stubborn.stdout().trim());
    const r2 = await procs.stop(stubborn, 'SIGINT', 300);
    expect(r2.killed).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(childPid)).toBe(false);
  });

  it('stopAll() leaves nothing running', async () => {
    const procs = new ProcessSet();
    const a = procs.spawn('a', 'sleep', ['30']);
    const b = procs.spawn('b', 'sleep', ['30'], { gentle: true });
    await procs.stopAll(1_000);
    expect([a.done, b.done]).toEqual([true, true]);
    expect([alive(a.pid), alive(b.pid)]).toEqual([false, false]);
  });

  it('waitFor() rejects with the last stderr line when the process exits first', async () => {
    const procs = new ProcessSet();
    const t = procs.spawn('fails', '/bin/sh', ['-c', 'echo "no BTF here" >&2; exit 3']);
    await expect(t.waitFor('stderr', /attached/, 5_000)).rejects.toThrow(/exit code 3.*no BTF here/);
  });
});

function splitArgv(argv: string[]): [string, string[]] {
  return [argv[0], argv.slice(1)];
}

/** Running (a zombie waiting for its new parent to reap it counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
