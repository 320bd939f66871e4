/**
 * `kvm-trace attach` as a user runs it: a real child process traces another real process (the reference
 * guest CLI) and is stopped by SIGINT, SIGTERM or --duration. Each way it must flush the JSONL (summary
 * last), print its summary, exit 0 and leave none of its BPF programs, maps or links in the kernel.
 * Bad input is one line and a non-zero exit.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BpfIds } from '../src/bpf/tracer.js';
import { bpfSkipReason, remainingBpfIds } from './bpf-support.js';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const skip = bpfSkipReason();
if (skip) console.log(`attach CLI tests skipped: ${skip}`);
const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-attach-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ids: BpfIds;
}

/** Start attach, wait until it is attached, run `whileAttached`, then stop it with `stop`. */
function attach(args: string[], whileAttached: () => void, stop?: NodeJS.Signals): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'attach', '--verbose', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let ids: BpfIds | undefined;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /bpf ids: (\{.*\})/.exec(stderr);
      if (m && !ids) {
        ids = JSON.parse(m[1]) as BpfIds;
        whileAttached();
        if (stop) child.kill(stop);
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (!ids) reject(new Error(`attach exited (${code}) before attaching: ${stderr}`));
      else resolve({ code, stdout, stderr, ids });
    });
  });
}

function guest(exits: number): void {
  const r = spawnSync(process.execPath, [cli, 'guest', '--scenario', 'pio-out', '--exits', String(exits), '--no-long-mode', '--json'], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`guest failed: ${r.stderr}`);
}


function jsonl(path: string): Array<Record<string, unknown>> {
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe.skipIf(skip !== undefined)('kvm-trace attach (child process)', () => {
  beforeAll(() => {
    spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { cwd: root });
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('%s: records flushed, summary last, nothing left in the kernel', async (sig) => {
    const out = join(dir, `${sig}.jsonl`);
    const r = await attach(['-c', 'node', '-o', out, '-q'], () => guest(2000), sig);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('kvm-trace summary');
    expect(r.ids.progs.length).toBeGreaterThan(0);
    const recs = jsonl(out);
    const last = recs.at(-1)!;
    expect(last.type).toBe('summary');
    expect(last.lost).toBe(0);
    const runs = recs.filter((x) => x.type === 'ioctl' && x.name === 'KVM_RUN');
    expect(runs.length).toBeGreaterThanOrEqual(2001);
    expect(recs.some((x) => x.type === 'kvm_run' && typeof x.user_addr === 'string' && typeof x.kernel_addr === 'string')).toBe(true);
    expect(await remainingBpfIds(r.ids)).toEqual({ progs: [], maps: [], links: [] });
  });

  it('--duration: stops by itself, --json prints the summary object', async () => {
    const r = await attach(['--duration', '1', '--json'], () => guest(500));
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(summary).toMatchObject({ type: 'summary', strategy: 'tracepoint', lost: 0, unknown_ioctls: 0 });
    expect((summary.ioctls as Record<string, { count: number }>).KVM_RUN.count).toBeGreaterThanOrEqual(501);
    expect(await remainingBpfIds(r.ids)).toEqual({ progs: [], maps: [], links: [] });
  });

  it.each([
    [['-p', '999999999'], /no process with id 999999999/],
    [['-p', 'abc'], /not a process id/],
    [['--strategy', 'magic'], /--strategy/],
    [['--strategy', 'fentry', '--duration', '1'], /fentry/],
    [['-o', '/nonexistent/dir/x.jsonl', '--duration', '1'], /cannot write \/nonexistent/],
    [['--ring-mb', '3'], /power of two/],
  ])('bad input %j: one line, non-zero exit', (args, message) => {
    const r = spawnSync(process.execPath, [cli, 'attach', ...args], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
