/**
 * The npm package as a user gets it: a clean clone of this checkout's HEAD, `npm ci`, `npm pack` (prepack
 * builds dist/), `npm install -g ./kvm-trace-*.tgz --prefix SCRATCH`, then the installed `kvm-trace` runs
 * `demo --json` and reproduces the reference guest's ground truth. The tarball holds the built CLI, the
 * prebuilt BPF object and its sources, the dashboards and the README — no tests, no source maps, no TS
 * sources. Without libbpf.so.1 (hidden by a bind mount in a private mount namespace) the installed CLI says
 * in one line how to install it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bpfSkipReason } from './bpf-support.js';

const root = join(import.meta.dirname, '..');
const scratch = mkdtempSync(join(tmpdir(), 'kvm-trace-pkg-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const LIBBPF = '/usr/lib/x86_64-linux-gnu/libbpf.so.1';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command without blocking the event loop; rejects with its output when it fails and `check` is set. */
function run(cmd: string, args: string[], opts: { cwd?: string; check?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const r = { code, stdout, stderr };
      if (opts.check !== false && code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
      else resolve(r);
    });
  });
}

describe('the npm package', () => {
  const clone = join(scratch, 'clone');
  const prefix = join(scratch, 'prefix');
  const bin = join(prefix, 'bin', 'kvm-trace');
  // npm's own noise and the developer's environment must not decide the outcome.
  const env = { ...process.env, npm_config_loglevel: 'error', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' };
  let tarball: string;

  it('packs from a clean clone: built CLI, BPF object and sources, dashboards, README; nothing else', async () => {
    await run('git', ['clone', '--quiet', '--no-hardlinks', root, clone]);
    expect(existsSync(join(clone, 'dist'))).toBe(false);
    await run('npm', ['ci', '--prefer-offline'], { cwd: clone, env });
    const packed = await run('npm', ['pack', '--json', '--loglevel=error'], { cwd: clone, env });
    const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    tarball = join(clone, info[0].filename);
    expect(info[0].filename).toMatch(/^kvm-trace-\d+\.\d+\.\d+\.tgz$/);
    const files = info[0].files.map((f) => f.path);
    expect(files).toContain('dist/src/cli/main.js');
    expect(files).toContain('dist/src/guest/vcpu-worker.js');
    expect(files).toContain('bpf/prebuilt/kvm_trace.bpf.o');
    expect(files).toContain('bpf/kvm_trace.h');
    expect(files).toContain('dashboards/kvm-trace.json');
    expect(files).toContain('README.md');
    expect(files).toContain('package.json');
    const unexpected = files.filter(
      (f) => !/^(dist\/src\/.+\.js|bpf\/prebuilt\/.+|bpf\/[^/]+\.(h|bpf\.c)|dashboards\/.+|README\.md|LICENSE|package\.json)$/.test(f),
    );
    expect(unexpected).toEqual([]);
    expect(files.some((f) => f.startsWith('test/') || f.endsWith('.map') || f.endsWith('.ts'))).toBe(false);
  }, 600_000);

  it('installs globally into a scratch prefix and the installed kvm-trace runs', async () => {
    expect(tarball, 'packed by the previous test').toBeDefined();
    await run('npm', ['install', '-g', tarball, '--prefix', prefix, '--prefer-offline'], { cwd: scratch, env });
    expect(existsSync(bin)).toBe(true);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    const version = await run(bin, ['--version'], { cwd: scratch });
    expect(version.stdout.trim()).toBe(pkg.version);
    const help = await run(bin, ['demo', '--help'], { cwd: scratch });
    expect(help.stdout).toContain('--otlp');
  }, 600_000);

  const skip = bpfSkipReason();
  if (skip) console.log(`installed demo skipped: ${skip}`);
  it.skipIf(skip !== undefined)('the installed `kvm-trace demo --json` reproduces the ground truth', async () => {
    expect(existsSync(bin), 'installed by the previous test').toBe(true);
    const out = join(scratch, 'demo');
    const r = await run(bin, ['demo', '--json', '--exits', '300', '--out', out], { cwd: scratch, check: false });
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout) as { issued: number; captured: number; lost: number; perfect: boolean; files: { report_html: string } };
    expect(d.perfect).toBe(true);
    expect(d.captured).toBe(d.issued);
    expect(d.issued).toBeGreaterThan(1000);
    expect(d.lost).toBe(0);
    expect(existsSync(d.files.report_html)).toBe(true);
  }, 300_000);

  const canHide = process.getuid?.() === 0 && existsSync(LIBBPF);
  if (!canHide) console.log('libbpf-missing check skipped: needs root and Debian\'s libbpf1 to hide it');
  it.skipIf(!canHide)('without libbpf.so.1 the installed CLI says in one line how to install it', async () => {
    expect(existsSync(bin), 'installed by the previous test').toBe(true);
    // A private mount namespace: /dev/null over the library for this one command only.
    const script = `mount --bind /dev/null "$(readlink -f ${LIBBPF})" && exec "$0" demo --json --exits 10 --out "$1"`;
    const r = await run('unshare', ['-m', 'sh', '-c', script, bin, join(scratch, 'demo-nolib')], { cwd: scratch, check: false });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^kvm-trace: libbpf\.so\.1 is missing: apt-get install libbpf1/);
  }, 120_000);
});
