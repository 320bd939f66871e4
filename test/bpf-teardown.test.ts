// Nothing of ours remains in the kernel after the process that attached is stopped by SIGINT or SIGTERM,
// or dies of a thrown error: a real child process (dist/scripts/bpf-standalone.js) attaches, prints its
// program/map/link ids, and we compare them with the kernel's lists afterwards.
import { createInterface } from 'node:readline';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { kernelBpfIds } from '../src/ffi/libbpf.js';
import { packageRoot } from '../src/bpf/paths.js';
import { BASE_PROGRAMS } from '../src/bpf/programs.js';
import type { BpfIds } from '../src/bpf/tracer.js';
import { bpfSkipReason, remainingBpfIds } from './bpf-support.js';

const skip = bpfSkipReason(false);
if (skip) console.log(`bpf-teardown tests skipped: ${skip}`);

const root = packageRoot();
const standalone = join(root, 'dist', 'scripts', 'bpf-standalone.js');

interface ChildResult {
  ids: BpfIds;
  stdout: string[];
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Children still running: killed after each test, so a failing test leaves no attached tracer behind. */
const live = new Set<number>();
afterEach(() => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
});

/** Start the standalone attach, wait for its ids, then `stop` it; resolve when it has exited. */
function runChild(args: string[], stop: (pid: number) => void): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [standalone, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child.pid!);
    const lines: string[] = [];
    let stderr = '';
    let ids: BpfIds | undefined;
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const o = JSON.parse(line) as { attached?: boolean; ids?: BpfIds };
      if (o.attached && o.ids) {
        ids = o.ids;
        // The ids are live while the child runs.
        const progs = new Set(kernelBpfIds('prog'));
        if (!ids.progs.every((id) => progs.has(id))) reject(new Error('child ids not in the kernel list'));
        stop(child.pid!);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      live.delete(child.pid!);
      if (!ids) reject(new Error(`child exited (${code ?? signal}) before attaching: ${stderr}`));
      else resolve({ ids, stdout: lines, stderr, code, signal });
    });
  });
}


const NONE: BpfIds = { progs: [], maps: [], links: [] };

describe.skipIf(skip !== undefined)('teardown of a real attached process', () => {
  beforeAll(() => {
    // The child runs compiled JS: bring dist/ up to date (tsc emits even if unrelated files have errors).
    spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
      cwd: root,
      stdio: 'ignore',
    });
    if (!existsSync(standalone)) throw new Error(`${standalone} was not built`);
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('%s: the handler closes the tracer, nothing remains', async (sig) => {
    const r = await runChild([], (pid) => process.kill(pid, sig));
    expect(r.ids.progs.length).toBe(BASE_PROGRAMS.length);
    expect(r.ids.links.length).toBe(BASE_PROGRAMS.length);
    const end = JSON.parse(r.stdout.at(-1)!) as { stopped: string; stats: { lost: number } };
    expect(end.stopped).toBe(sig);
    expect(r.code).toBe(0);
    expect(await remainingBpfIds(r.ids)).toEqual(NONE);
  });

  it('a thrown error after attach: nothing remains', async () => {
    const r = await runChild(['--throw-after-attach'], () => {});
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('thrown after attach');
    expect(await remainingBpfIds(r.ids)).toEqual(NONE);
  });

  it('SIGKILL: the kernel frees everything with the fds (nothing is pinned)', async () => {
    const r = await runChild([], (pid) => process.kill(pid, 'SIGKILL'));
    expect(r.signal).toBe('SIGKILL');
    expect(await remainingBpfIds(r.ids)).toEqual(NONE);
  });

  it('--duration expiry: nothing remains', async () => {
    const r = await runChild(['--duration', '0.2'], () => {});
    expect(JSON.parse(r.stdout.at(-1)!).stopped).toBe('duration');
    expect(await remainingBpfIds(r.ids)).toEqual(NONE);
  });
});

describe.skipIf(skip !== undefined)('preconditions handled by the lifecycle', () => {
  const hasUnshare = spawnSync('unshare', ['--version']).status === 0;

  it.skipIf(!hasUnshare)('mounts tracefs itself when it is missing (in a private mount namespace) and says so', () => {
    if (!hasUnshare) console.log('no unshare(1): tracefs mount test skipped');
    // Unmount tracefs only inside a new mount namespace: the rest of the machine keeps it.
    const r = spawnSync(
      'unshare',
      ['--mount', '--propagation', 'private', 'sh', '-c', `umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; test -e /sys/kernel/tracing/events && echo still-mounted; exec "${process.execPath}" "${standalone}" --duration 0.1`],
      { encoding: 'utf8' },
    );
    expect(r.stdout).not.toContain('still-mounted');
    expect(r.stderr).toContain('mounted tracefs at /sys/kernel/tracing');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!).stopped).toBe('duration');
  });

  it('without root: one clear line and a non-zero exit', () => {
    // Root loads the modules, then the process drops to nobody before attaching: the checkout may sit in a
    // directory nobody cannot read (a clone under /root is 0700), so nothing may be read from it as nobody.
    const script = [
      `import { run } from ${JSON.stringify(pathToFileURL(standalone).href)};`,
      'process.setgroups([]); process.setgid(65534); process.setuid(65534);',
      "if (process.getuid() !== 65534 || process.getgid() !== 65534) throw new Error('still privileged');",
      "run(['--duration', '0.1']);",
    ].join('\n');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: '/' });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toEqual([
      'kvm-trace bpf: bpf: EPERM (kvm-trace must run as root to load BPF programs)',
    ]);
  });
});
