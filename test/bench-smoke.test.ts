/**
 * The benchmark works end to end: `bench --smoke --json` (a few thousand exits, one round, no peers) runs the
 * real workload untraced and under every kvm-trace mode the CLI offers, and prints one JSON object of the
 * documented shape. No timing assertions (speed targets are the benchmark's job, not a unit test's): only
 * shape, and that what was measured is finite and positive — and that kvm-trace WAS measured once the
 * CLI has `attach`. Runs as root with /dev/kvm; skips with a reason elsewhere.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const benchJs = join(root, 'dist', 'scripts', 'bench.js');
const cliJs = join(root, 'dist', 'src', 'cli', 'main.js');

function kvmUsable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (tracers and /dev/kvm)';
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return 'no usable /dev/kvm';
  }
  return null;
}
const skipReason = kvmUsable();
if (skipReason) console.log(`bench-smoke: skipped — ${skipReason}`);

const positive = (x: unknown): void => {
  expect(typeof x).toBe('number');
  expect(Number.isFinite(x as number)).toBe(true);
  expect(x as number).toBeGreaterThan(0);
};

const cliHas = (cmd: string): boolean => {
  const r = spawnSync(process.execPath, [cliJs, '--help'], { encoding: 'utf8' });
  return new RegExp(`^\\s+${cmd}\\b`, 'm').test(r.stdout ?? '');
};

/** A headline entry: measured (ratio > 0) or not (ratio null and a reason). */
function measuredOrExplained(o: Record<string, unknown>): boolean {
  expect(o).toBeTypeOf('object');
  if (o.ratio === null) {
    expect(typeof o.reason).toBe('string');
    expect((o.reason as string).length).toBeGreaterThan(0);
    return false;
  }
  positive(o.ratio);
  return true;
}

describe.skipIf(skipReason !== null)('npm run bench -- --smoke --json', () => {
  it('prints one JSON object with the documented shape and sane numbers', () => {
    expect(existsSync(benchJs), `${benchJs} missing: build first (npx tsc -p .)`).toBe(true);
    const r = spawnSync(process.execPath, [benchJs, '--smoke', '--json'], { encoding: 'utf8', timeout: 90_000 });
    expect(r.status, `bench failed: ${r.stderr}`).toBe(0);
    expect(r.stderr).toMatch(/bench \[\d+ s\] round 1\/1/); // the progress line
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]) as Record<string, any>;

    expect(j.rounds).toBe(1);
    expect(j.smoke).toBe(true);
    positive(j.exits);
    positive(j.untraced_s);
    positive(j.exits_per_s);
    expect(j.untraced_s_range[0]).toBeLessThanOrEqual(j.untraced_s_range[1]);
    expect(j.workloads.length).toBeGreaterThanOrEqual(1);
    for (const w of j.workloads) {
      positive(w.untraced_s.median);
      expect(w.exits).toBeGreaterThanOrEqual(j.exits); // the loop's exits plus the final HLT
    }

    // kvm-trace: measured once the CLI can attach — then it must also have its summary numbers.
    const attach = cliHas('attach');
    expect(measuredOrExplained(j.kvm_trace)).toBe(attach);
    if (attach) {
      const kt = j.kvm_trace;
      expect(kt.errors).toEqual([]);
      expect(Number.isInteger(kt.lost) && kt.lost >= 0).toBe(true);
      positive(kt.records_per_s);
      positive(kt.attach_s);
      positive(kt.detach_s);
      positive(kt.rss_mb);
      positive(kt.cpu_total_s);
      expect(typeof kt.cpu_us_per_record).toBe('number');
      expect(kt.ratio_ci[0]).toBeLessThanOrEqual(kt.ratio);
      expect(kt.ratio_ci[1]).toBeGreaterThanOrEqual(kt.ratio);
      expect(kt.events).toBeGreaterThanOrEqual(j.exits);
      expect(kt.missing_runs).toBe(0); // every exit of the workload has its KVM_RUN record
    }
    measuredOrExplained(j.kvm_trace_aggregate);
    expect(measuredOrExplained(j.kvm_trace_top)).toBe(cliHas('top'));

    // The smoke run never runs peers; each is still reported, with the reason.
    expect(Object.keys(j.peers).sort()).toEqual(['bpftrace', 'bpftrace_count', 'perf_trace', 'strace']);
    for (const p of Object.values(j.peers) as Array<Record<string, unknown>>) expect(measuredOrExplained(p)).toBe(false);

    // Throughput rows: a number once the module exists, else null with the reason.
    if (existsSync(join(root, 'dist', 'scripts', 'lib', 'ring-producer.js'))) positive(j.ringbuf.records_per_s);
    else expect(j.ringbuf.records_per_s).toBeNull();
    for (const t of [j.ringbuf, j.decoder]) {
      expect(typeof t.note).toBe('string');
      if (t.records_per_s !== null) positive(t.records_per_s);
    }

    expect(j.targets.map((t: { name: string }) => t.name)).toEqual([
      'cpu per record',
      'full capture',
      'cpu per record (-w)',
      'full capture (-w)',
      'aggregate mode',
      'aggregate vs bpftrace',
      'top',
      'decoder',
      'attach time',
      'detach time',
      'tracer RSS',
    ]);
    for (const t of j.targets) {
      expect([true, false, null]).toContain(t.pass);
      if (t.pass === null) expect(typeof t.reason).toBe('string');
      else expect(t.pass).toBe(t.verdict === 'pass'); // judged on the interval: pass only when all of it meets the target
    }
    // The host's load before and after, and each kvm-trace mode's idle attach/detach (the CPU baseline).
    expect(j.host.loadavg_start).toHaveLength(3);
    expect(typeof j.host.busy_cores_start).toBe('number');
    if (attach) {
      expect(j.idle['kvm-trace'].samples).toBe(1);
      positive(j.idle['kvm-trace'].cpu_total_s);
    }
    expect(j.aborted).toBe(false);
  });

  it('rejects a bad option with one line and exit code 2', () => {
    const r = spawnSync(process.execPath, [benchJs, '--rounds', 'zero'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/--rounds must be an integer/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
