/**
 * `kvm-trace top` as a person uses it, against the reference guest (issue 11's acceptance):
 * - `top -1 --json`, `top --log --csv` and `top --log --json`, all three attached to one guest run at once,
 *   report exactly the exits (per reason, per vCPU) and ioctls the guest counted itself; nothing of theirs
 *   is left in the kernel afterwards;
 * - in tmux: the screen shows the guest's process and vCPU rows with plausible rates; keys sort, filter
 *   (pid, comm, vCPU, reason), drill in and out, pause (the screen freezes), reset and quit; a narrow window
 *   still shows the identity and exit-rate columns and a resize (SIGWINCH) redraws wider; after `q` and
 *   after SIGTERM the terminal is restored (normal screen, cursor visible, canonical mode, echo) and the
 *   BPF programs, maps and links are gone.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BpfIds } from '../src/bpf/tracer.js';
import { bpfSkipReason, remainingBpfIds } from './bpf-support.js';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const skip = bpfSkipReason();
const tmuxMissing = spawnSync('tmux', ['-V']).status !== 0 ? 'tmux not installed (node scripts/bootstrap.mjs --test installs it)' : undefined;
if (skip) console.log(`top tests skipped: ${skip}`);
else if (tmuxMissing) console.log(`top terminal test skipped: ${tmuxMissing}`);
const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-top-'));
const socket = `kvm-trace-test-${process.pid}`;

beforeAll(() => {
  if (skip) return;
  // Tests that spawn the CLI need dist/ (see the aggregate and attach CLI tests).
  spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { cwd: root });
});
afterAll(() => {
  spawnSync('tmux', ['-L', socket, 'kill-server']);
  rmSync(dir, { recursive: true, force: true });
});

interface GuestJson {
  pid: number;
  ioctls: number;
  exits: Record<string, number>;
  per_vcpu: Array<{ vcpu: number; exits: Record<string, number> }>;
}

/** The reference guest in a child that starts only when told, so its pid is known before its first ioctl. */
function gatedGuest(opts: object): { pid: number; start: () => void; done: Promise<GuestJson> } {
  const url = pathToFileURL(join(root, 'dist', 'src', 'guest', 'index.js')).href;
  const script = `import { runGuest } from ${JSON.stringify(url)};
process.stdin.once('data', async () => {
  try { process.stdout.write(JSON.stringify(await runGuest(${JSON.stringify(opts)}))); }
  catch (e) { process.stderr.write(String(e)); process.exitCode = 1; }
  process.stdin.pause();
});`;
  // A file, not -e: the guest's vCPU worker threads inherit the exec arguments, and --input-type would break them.
  const file = join(dir, `guest-${Date.now()}.mjs`);
  writeFileSync(file, script);
  const child = spawn(process.execPath, [file], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const done = new Promise<GuestJson>((resolve, reject) =>
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as GuestJson) : reject(new Error(`guest exited ${code}: ${err}`)))),
  );
  return { pid: child.pid!, start: () => child.stdin.write('go\n'), done };
}

interface TopRun {
  child: ChildProcess;
  attached: Promise<BpfIds>;
  exit: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function spawnTop(args: string[]): TopRun {
  const child = spawn(process.execPath, [cli, 'top', '--verbose', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let onIds: (ids: BpfIds) => void = () => {};
  const attached = new Promise<BpfIds>((resolve) => (onIds = resolve));
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d;
    const m = /bpf ids: (\{.*\})/.exec(stderr);
    if (m) onIds(JSON.parse(m[1]) as BpfIds);
  });
  const exit = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
  return { child, attached: Promise.race([attached, exit.then((e) => Promise.reject(new Error(`top exited ${e.code} before attaching: ${e.stderr}`)))]), exit };
}

type Counter = { total: number; per_s?: number; delta?: number };
interface TopJsonRow {
  pid: number | null;
  vm?: number | null;
  vcpu: number | null;
  level: string;
  exits?: Counter;
  by_reason?: Record<string, Counter>;
  ioctls?: Counter;
  errors?: Counter;
  run_p50_ns?: number;
  run_p99_ns?: number;
  handling_p99_ns?: number;
}

const noneLeft = { progs: [], maps: [], links: [] };

describe.skipIf(skip !== undefined)('kvm-trace top -1 / --log against the reference guest', () => {
  it('-1 --json, --log --csv and --log --json report exactly the guest’s exits and ioctls', async () => {
    const guest = gatedGuest({ scenario: 'mixed', vcpus: 2, exits: 3000, probeLongMode: false });
    const once = spawnTop(['-1', '--json', '-p', String(guest.pid), '-d', '5']);
    const csv = spawnTop(['--log', '0.5', '--csv', '-p', String(guest.pid), '-n', '8']);
    const jsonl = spawnTop(['--log', '0.5', '--json', '-p', String(guest.pid), '-n', '8']);
    const ids = await Promise.all([once.attached, csv.attached, jsonl.attached]);
    guest.start();
    const g = await guest.done;
    const [o, c, j] = await Promise.all([once.exit, csv.exit, jsonl.exit]);
    for (const r of [o, c, j]) expect(r.code, r.stderr).toBe(0);
    // 2 vCPUs × 3000 loop exits (IO : MMIO : HLT = 2 : 2 : 1), plus each vCPU's final HLT.
    expect(g.exits).toEqual({ IO: 2400, MMIO: 2400, HLT: 1202 });
    const allExits = 6002;

    // -1 --json: totals since attach, per process and per vCPU.
    const snap = JSON.parse(o.stdout) as { rows: TopJsonRow[]; processes: Array<{ pid: number }> };
    const proc = snap.rows.find((r) => r.level === 'process')!;
    expect(proc.pid).toBe(guest.pid);
    expect(Object.fromEntries(Object.entries(proc.by_reason!).map(([k, v]) => [k, v.total]))).toEqual(g.exits);
    expect(proc.ioctls!.total).toBe(g.ioctls);
    expect(proc.errors!.total).toBe(0);
    expect(proc.run_p50_ns).toBeGreaterThan(0);
    expect(proc.run_p99_ns).toBeGreaterThanOrEqual(proc.run_p50_ns!);
    for (const v of g.per_vcpu) {
      const row = snap.rows.find((r) => r.level === 'vcpu' && r.vcpu === v.vcpu)!;
      expect(Object.fromEntries(Object.entries(row.by_reason!).map(([k, x]) => [k, x.total]))).toEqual(v.exits);
      expect(row).not.toHaveProperty('ioctls'); // this source has no per-vCPU ioctl counts: absent, not 0
      // Per vCPU, from the kernel: its VM, its own KVM_RUN latency and the VMM's handling time.
      expect(row.vm).toBe(0);
      expect(row.run_p50_ns).toBeGreaterThan(0);
      expect(row.run_p99_ns).toBeGreaterThanOrEqual(row.run_p50_ns!);
      expect(row.handling_p99_ns).toBeGreaterThan(0);
    }

    // --log --csv: the per-interval deltas add up to the guest's counts.
    const lines = c.stdout.trim().split('\n');
    let header: string[] = [];
    const sums: Record<string, number> = {};
    let data = 0;
    for (const line of lines) {
      const cells = line.split(',');
      if (cells[0] === 'time') {
        header = cells;
        continue;
      }
      data++;
      header.forEach((h, i) => {
        if (['exits', 'IO', 'MMIO', 'HLT', 'ioctls', 'errors'].includes(h) && cells[i] !== '') sums[h] = (sums[h] ?? 0) + Number(cells[i]);
      });
    }
    expect(data).toBe(8);
    expect(sums).toEqual({ exits: allExits, ...g.exits, ioctls: g.ioctls, errors: 0 });

    // --log --json: one object per interval, the same sums.
    const objs = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as { exits: Counter; by_reason: Record<string, Counter>; ioctls: Counter });
    expect(objs).toHaveLength(8);
    expect(objs.reduce((n, x) => n + (x.exits.delta ?? 0), 0)).toBe(allExits);
    expect(objs.reduce((n, x) => n + (x.ioctls.delta ?? 0), 0)).toBe(g.ioctls);
    for (const [reason, n] of Object.entries(g.exits)) expect(objs.reduce((a, x) => a + (x.by_reason[reason]?.delta ?? 0), 0)).toBe(n);

    for (const id of ids) expect(await remainingBpfIds(id)).toEqual(noneLeft);
  });

  it('bad input is one line and a non-zero exit', () => {
    const r = spawnSync(process.execPath, [cli, 'top', '-p', '999999999', '-1'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual(['kvm-trace: no process with id 999999999']);
    const u = spawnSync(process.execPath, [cli, 'top', '--csv', '--json'], { encoding: 'utf8' });
    expect(u.status).toBe(2);
    expect(u.stderr).toContain('--csv and --json exclude each other');
  });
});

// ---- tmux ----

const tmux = (...args: string[]): string => {
  const r = spawnSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const pane = (s: string): string[] => tmux('capture-pane', '-p', '-t', s).split('\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(s: string, what: string, ok: (lines: string[]) => boolean, ms = 15_000): Promise<string[]> {
  const end = Date.now() + ms;
  let lines = pane(s);
  while (!ok(lines)) {
    if (Date.now() > end) throw new Error(`tmux ${s}: timed out waiting for ${what}; screen:\n${lines.join('\n')}`);
    await sleep(100);
    lines = pane(s);
  }
  return lines;
}

/** "79.4k" → 79400. */
const num = (s: string): number => {
  const m = /^([\d.]+)([kM]?)$/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === 'k' ? 1e3 : m[2] === 'M' ? 1e6 : 1);
};

/** The table under the header line: rows as cells keyed by column title. */
function table(lines: string[]): Array<Record<string, string>> {
  const h = lines.findIndex((l) => /^\s+PID\s+(VM\s+)?VCPU/.test(l));
  if (h < 0) return [];
  const titles = lines[h].trim().replace(/ (p50|p99)/g, '_$1').split(/\s+/);
  const rows: Array<Record<string, string>> = [];
  for (const l of lines.slice(h + 1)) {
    if (!/^\s+(\d+|\*)\s/.test(l)) break;
    const cells = l.trim().split(/\s+/);
    // COMM may be absent (narrow) but is one word here ("node").
    rows.push(Object.fromEntries(titles.map((t, i) => [t, cells[i]])));
  }
  return rows;
}

/** Start top in a tmux session; stderr (libbpf, bpf ids) goes to a file; the shell reports the exit and tty state. */
function startTopSession(name: string, cols: number, rows: number, args: string): string {
  const err = join(dir, `${name}.err`);
  tmux('new-session', '-d', '-s', name, '-x', String(cols), '-y', String(rows),
    `node ${cli} top ${args} --verbose 2>${err}; echo EXIT:$?; stty -a | tr ';' '\\n' | grep -Eo -- '-?(icanon|echo)\\b' | tr '\\n' ' '; echo; sleep 600`);
  return err;
}

async function idsFrom(errFile: string): Promise<BpfIds> {
  const end = Date.now() + 15_000;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(errFile, 'utf8');
    } catch {
      // the shell has not opened it yet
    }
    const m = /bpf ids: (\{.*\})/.exec(text);
    if (m) return JSON.parse(m[1]) as BpfIds;
    if (Date.now() > end) throw new Error(`no bpf ids in ${errFile}: ${text}`);
    await sleep(100);
  }
}

async function expectRestored(name: string, ids: BpfIds): Promise<void> {
  // The exit line, then the tty state the shell prints after it.
  const lines = await waitFor(name, 'the exit line and the tty state', (l) => /icanon/.test(l[l.findIndex((x) => x.startsWith('EXIT:')) + 1] ?? ''));
  const at = lines.findIndex((x) => x.startsWith('EXIT:'));
  expect(lines[at]).toBe('EXIT:0');
  // The shell after top: canonical mode and echo are back on, the normal screen and the cursor too.
  expect(lines[at + 1].trim().split(/\s+/).sort()).toEqual(['echo', 'icanon']);
  expect(tmux('display-message', '-p', '-t', name, '#{alternate_on} #{cursor_flag}').trim()).toBe('0 1');
  expect(await remainingBpfIds(ids)).toEqual(noneLeft);
}

describe.skipIf(skip !== undefined || tmuxMissing !== undefined)('kvm-trace top in a terminal (tmux)', () => {
  let guest: ChildProcess | undefined;
  beforeAll(() => {
    // A guest that runs until stopped: the mixed loop exits IO : MMIO : HLT = 2 : 2 : 1.
    guest = spawn(process.execPath, [cli, 'guest', '--scenario', 'mixed', '--vcpus', '2', '--exits', '2000000000', '--no-long-mode'], { stdio: 'ignore' });
  });
  afterAll(() => {
    guest?.kill('SIGTERM');
  });

  it('rows, rates, sort, filters, drill, pause, reset and quit; the terminal comes back', async () => {
    const s = 'keys';
    const err = startTopSession(s, 120, 24, `-p ${guest!.pid} -d 0.5`);
    const ids = await idsFrom(err);
    const pid = String(guest!.pid);
    let lines = await waitFor(s, 'both vCPU rows with rates', (l) => table(l).filter((r) => r.VCPU !== '-' && num(r['EXITS/s']) > 0).length === 2);
    expect(lines[0]).toMatch(/^kvm-trace top  \d\d:\d\d:\d\d  rates over 0\.5s/);
    let rows = table(lines);
    expect(rows.map((r) => [r.PID, r.VCPU, r.COMM])).toEqual([[pid, '-', 'node'], [pid, expect.stringMatching(/^[01]$/), 'node'], [pid, expect.stringMatching(/^[01]$/), 'node']]);
    const [proc, ...vcpus] = rows;
    // Plausible rates: each vCPU between 1 k and 1 M exits/s (PVM emulates a PIO exit in ≈ 8 µs), the
    // process the sum of its vCPUs, and the mixed program's 2 : 2 : 1.
    for (const v of vcpus) {
      expect(num(v['EXITS/s'])).toBeGreaterThan(1000);
      expect(num(v['EXITS/s'])).toBeLessThan(1e6);
      expect(num(v['IO/s']) / num(v['MMIO/s'])).toBeCloseTo(1, 1);
      expect(num(v['IO/s']) / num(v['HLT/s'])).toBeGreaterThan(1.8);
      expect(num(v['IO/s']) / num(v['HLT/s'])).toBeLessThan(2.2);
      expect(v['IOCTL/s']).toBe('-');
      // Per-vCPU KVM_RUN latency and VMM handling time, kept in the kernel.
      expect(v['RUN_p99']).toMatch(/\d(ns|µs|ms)$/);
      expect(v['VMM_p99']).toMatch(/\d(ns|µs|ms)$/);
      expect(v.VM).toBe('0');
    }
    expect(num(proc['EXITS/s']) / vcpus.reduce((n, v) => n + num(v['EXITS/s']), 0)).toBeCloseTo(1, 1);
    expect(num(proc['IOCTL/s'])).toBeGreaterThan(1000);
    expect(proc['RUN_p99']).toMatch(/µs|ms|ns$/);

    tmux('send-keys', '-t', s, 's');
    await waitFor(s, 'sort by ioctls', (l) => l[2].startsWith('sort ioctls ↓'));
    tmux('send-keys', '-t', s, 'S');
    await waitFor(s, 'sort by exits', (l) => l[2].startsWith('sort exits ↓'));

    tmux('send-keys', '-t', s, 'v', '1', 'Enter');
    lines = await waitFor(s, 'vCPU filter', (l) => l[2].includes('filter vcpu=1'));
    expect(table(lines).map((r) => r.VCPU)).toEqual(['-', '1']);
    tmux('send-keys', '-t', s, 'x', 'e', 'H', 'L', 'T', 'Enter');
    lines = await waitFor(s, 'reason filter', (l) => l[2].includes('filter reason=HLT'));
    const header = lines.find((l) => /^\s+PID\s+(VM\s+)?VCPU/.test(l))!;
    expect(header).toContain('SEL/s');
    expect(header).toContain('HLT/s');
    expect(header).not.toContain('IO/s');
    tmux('send-keys', '-t', s, 'x', 'p', '1', 'Enter');
    await waitFor(s, 'pid filter with no match', (l) => l.some((x) => x.startsWith('no rows match')));
    tmux('send-keys', '-t', s, 'x', 'c', 'n', 'o', 'd', 'e', 'Enter');
    lines = await waitFor(s, 'comm filter', (l) => l[2].includes('filter comm=node'));
    expect(table(lines)).toHaveLength(3);

    tmux('send-keys', '-t', s, 'x', 'Down', 'Enter');
    await waitFor(s, 'drilled in', (l) => l[2].includes(`drilled into pid ${pid}`));
    tmux('send-keys', '-t', s, 'Escape');
    await waitFor(s, 'back up', (l) => !l[2].includes('drilled'));

    tmux('send-keys', '-t', s, 'Space');
    const frozen = await waitFor(s, 'paused', (l) => l[0].includes('[PAUSED]'));
    await sleep(1200);
    expect(pane(s).slice(1)).toEqual(frozen.slice(1)); // the clock line aside, nothing moved
    tmux('send-keys', '-t', s, 'Space');
    await waitFor(s, 'running again', (l) => !l[0].includes('[PAUSED]') && l.slice(1).join('\n') !== frozen.slice(1).join('\n'));

    tmux('send-keys', '-t', s, 'r');
    await waitFor(s, 'reset', (l) => l.some((x) => x.startsWith('totals reset')));

    tmux('send-keys', '-t', s, 'h');
    await waitFor(s, 'help', (l) => l.some((x) => x.includes('drill into its VM')));
    tmux('send-keys', '-t', s, 'q');
    await expectRestored(s, ids);
  });

  it('a narrow window keeps the identity and exit rates; a resize redraws; SIGTERM restores the terminal', async () => {
    const s = 'narrow';
    const err = startTopSession(s, 36, 14, `-p ${guest!.pid} -d 0.5`);
    const ids = await idsFrom(err);
    let lines = await waitFor(s, 'vCPU rows with rates', (l) => table(l).filter((r) => r.VCPU !== '-' && num(r['EXITS/s']) > 0).length === 2);
    const header = lines.find((l) => /^\s+PID\s+(VM\s+)?VCPU/.test(l))!;
    expect(header.trim().split(/\s+/).filter((t) => t !== 'VM').slice(0, 3)).toEqual(['PID', 'VCPU', 'EXITS/s']);
    expect(header).not.toContain('COMM');
    for (const r of table(lines)) expect(num(r['EXITS/s'])).toBeGreaterThan(0);

    tmux('resize-window', '-t', s, '-x', '130');
    lines = await waitFor(s, 'the wide layout after SIGWINCH', (l) => l.some((x) => /^\s+PID\s+(VM\s+)?VCPU\s+COMM.*IO\/s/.test(x)));

    const panePid = tmux('display-message', '-p', '-t', s, '#{pane_pid}').trim();
    const topPid = spawnSync('pgrep', ['-P', panePid, '-f', 'main.js top'], { encoding: 'utf8' }).stdout.trim();
    expect(topPid).toMatch(/^\d+$/);
    process.kill(Number(topPid), 'SIGTERM');
    await expectRestored(s, ids);
  });
});
