/**
 * `kvm-trace guest` as users run it: the compiled binary (dist/, built by `npm run build` / npm test's
 * bootstrap) in a child process. The acceptance checks: exact exit counts as JSON, 4 vCPUs on 4 threads,
 * and one clear line with a non-zero exit for a bad scenario, a missing KVM device and a guest fault, with
 * every fd the process opened closed again (from its own ground-truth log).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GtRecord } from '../src/guest/index.js';

const BIN = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
const isRoot = process.getuid?.() === 0;
const haveKvm = existsSync('/dev/kvm');
const kvmOk = haveKvm && isRoot;
if (!kvmOk) console.log(`guest-cli.test: skipping runs that need KVM: ${!haveKvm ? 'no /dev/kvm' : 'not root'}`);

function cli(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  expect(existsSync(BIN), `${BIN} missing: run npm run build`).toBe(true);
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const fdBalance = (path: string): { opened: number[]; closed: number[] } => {
  const recs = readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as GtRecord);
  const fds = recs.filter((r) => r.type === 'fd');
  return { opened: fds.filter((r) => r.op === 'open').map((r) => r.fd).sort(), closed: fds.filter((r) => r.op === 'close').map((r) => r.fd).sort() };
};

describe('kvm-trace guest: bad input (no KVM needed)', () => {
  it('--scenario nope: one line naming the valid scenarios, non-zero exit', () => {
    const r = cli(['guest', '--scenario', 'nope']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      "kvm-trace: unknown scenario 'nope' (valid: pio-out, pio-in, mmio-write, mmio-read, hlt, mixed, layout, fault, all)",
    ]);
  });

  it('a missing KVM device (KVM_TRACE_KVM_DEV or --kvm-dev): one line, non-zero exit', () => {
    for (const r of [cli(['guest'], { KVM_TRACE_KVM_DEV: '/nonexistent/kvm' }), cli(['guest', '--kvm-dev', '/nonexistent/kvm'])]) {
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd().split('\n')).toEqual(['kvm-trace: cannot open KVM device /nonexistent/kvm: no such device (is KVM enabled on this host?)']);
    }
  });

  it.each([[['--exits', 'many']], [['--vcpus', '0']], [['--vcpus', '-2']]])('%j: one line, usage exit code', (args) => {
    const r = cli(['guest', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe.skipIf(!kvmOk)('kvm-trace guest on this machine', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvm-trace-guest-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('--scenario pio-out --exits 10000 --json: exactly 10000 IO exits and 1 HLT', () => {
    const log = join(dir, 'pio.jsonl');
    const r = cli(['guest', '--scenario', 'pio-out', '--exits', '10000', '--json', '--log', log]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.exits).toEqual({ IO: 10000, HLT: 1 });
    expect(j.vcpus).toBe(1);
    expect(j.kvm_run).toHaveLength(1);
    expect(j.kvm_run[0]).toMatchObject({ vcpu: 0, user_addr: expect.stringMatching(/^0x[0-9a-f]+000$/), mmap_size: expect.any(Number), fd: expect.any(Number) });
    expect(typeof j.long_mode).toBe('boolean');
    expect(j.elapsed_s).toBeGreaterThan(0);
    const b = fdBalance(log);
    expect(b.opened.length).toBeGreaterThanOrEqual(3); // /dev/kvm, VM, vCPU (+ long-mode probe)
    expect(b.closed).toEqual(b.opened);
  });

  it('--scenario mixed --vcpus 4 --json: 4 vCPUs on 4 threads with per-vCPU counts', () => {
    const r = cli(['guest', '--scenario', 'mixed', '--vcpus', '4', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.vcpus).toBe(4);
    expect(j.per_vcpu).toHaveLength(4);
    expect(new Set(j.per_vcpu.map((v: { tid: number }) => v.tid)).size).toBe(4);
    for (const v of j.per_vcpu) expect(v.exits).toEqual({ IO: 400, MMIO: 400, HLT: 201 });
    expect(j.exits).toEqual({ IO: 1600, MMIO: 1600, HLT: 804 });
    // One kvm_run mapping per vCPU. (Not "4 distinct fds": a worker that finishes first closes its vCPU fd,
    // and a later KVM_CREATE_VCPU in another worker may legitimately get the same number back.)
    expect(j.kvm_run.map((k: { vcpu: number }) => k.vcpu).sort()).toEqual([0, 1, 2, 3]);
    for (const k of j.kvm_run) {
      expect(k.fd).toBeGreaterThanOrEqual(0);
      expect(k.user_addr).toMatch(/^0x[0-9a-f]+$/);
      expect(k.mmap_size).toBeGreaterThan(0);
    }
  });

  it('a guest fault: one line, non-zero exit, every fd closed (per the process own log)', () => {
    const log = join(dir, 'fault.jsonl');
    const r = cli(['guest', '--scenario', 'fault', '--vcpus', '2', '--log', log]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^kvm-trace: vCPU \d \(scenario fault\): guest fault: KVM_EXIT_SHUTDOWN/);
    const b = fdBalance(log);
    expect(b.opened.length).toBeGreaterThanOrEqual(4);
    expect(b.closed).toEqual(b.opened);
  });

  it('text output names the scenario, vCPU threads, kvm_run addresses and long-mode support', () => {
    const r = cli(['guest', '--scenario', 'hlt', '--exits', '20']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^guest: hlt on 1 vCPU: exits HLT=20; \d+ ioctls/);
    expect(r.stdout).toMatch(/vCPU 0: tid \d+, fd \d+, kvm_run at 0x[0-9a-f]+, exits HLT=20/);
    expect(r.stdout).toMatch(/64-bit long mode: (yes|no) \(/);
  });
});
