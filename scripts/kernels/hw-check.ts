/**
 * The hardware-exit check of the matrix (attach --hw-exits), run inside each kernel through the CLI as a
 * user would: a full capture and an aggregate capture attached at once, the reference guest (run under its
 * own command name, so nothing else is traced) making PIO exits, both stopped by SIGINT. Where the kernel
 * emits kvm:kvm_exit (kvm-amd here: TCG emulates SVM) both must have counted hardware exits — the same number,
 * the KVM_RUN records' hw_exits summing to the aggregate's — with reason names from the kernel; where it does
 * not (PVM), both must say so once and leave the fields out.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface HwRow {
  isa: string;
  reason: string;
  samples: number;
  p50_ns: number;
  time_pct: number;
}

export interface HwResult {
  /** Both captures counted hardware exits. */
  available: boolean;
  /** The summary's statement (once per capture). */
  statement: string;
  names: string | null;
  /** The aggregate's hardware-exit table (most frequent first). */
  rows: HwRow[];
  /** KVM_RUN calls and hardware exits: the full capture's records, the aggregate's counters. */
  record_runs: number;
  record_hw_exits: number;
  aggregate_hw_exits: number;
  /** The first vCPU's split of KVM_RUN time (aggregate). */
  split: { runs: number; hw_exits: number; guest_ns: number; kvm_ns: number; vmm_ns: number } | null;
  /** KVM_RUN records carrying hw fields where the kernel does not emit them (must be 0). */
  fields_without_events: number;
  error?: string;
}

const GUEST_COMM = 'kt-hw-guest';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `kvm-trace attach …` until it says it attached; resolves when it exits (after `stop`). */
function attach(CLI: string, args: string[]): { attached: Promise<void>; stop: () => void; done: Promise<Run> } {
  const child = spawn(process.execPath, [CLI, 'attach', '-c', GUEST_COMM, '--hw-exits', '-q', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let ready: () => void = () => {};
  const attached = new Promise<void>((r) => (ready = r));
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (/attached: \d+ program/.test(stderr)) ready();
  });
  const done = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  void done.then(() => ready());
  return { attached, stop: () => child.kill('SIGINT'), done };
}

const summaryOf = (r: Run): Record<string, any> => JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as Record<string, any>;

export async function hwExitCheck(CLI: string, exits: number): Promise<HwResult> {
  const work = mkdtempSync(join(tmpdir(), 'kt-hw-'));
  try {
    const node = join(work, GUEST_COMM);
    symlinkSync(process.execPath, node);
    const jsonl = join(work, 'full.jsonl');
    const full = attach(CLI, ['-o', jsonl]);
    const agg = attach(CLI, ['--aggregate']);
    await Promise.all([full.attached, agg.attached]);
    const g = spawnSync(node, [CLI, 'guest', '--scenario', 'pio-out', '--vcpus', '1', '--exits', String(exits), '--no-long-mode', '--json'], { encoding: 'utf8', timeout: 600_000 });
    full.stop();
    agg.stop();
    const [f, a] = await Promise.all([full.done, agg.done]);
    if (g.status !== 0) throw new Error(`guest exited ${g.status}: ${(g.stderr ?? '').trim().split('\n').pop()}`);
    if (f.code !== 0 || a.code !== 0) throw new Error(`attach exited ${f.code}/${a.code}: ${(f.stderr + a.stderr).trim().split('\n').pop()}`);
    const fs = summaryOf(f);
    const as = summaryOf(a);
    const records = readFileSync(jsonl, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    const runs = records.filter((r) => r.type === 'ioctl' && r.name === 'KVM_RUN');
    const available = fs.hw_exits?.available === true && as.hw_exits?.available === true;
    const split = (as.run_split ?? [])[0];
    return {
      available,
      statement: String(as.hw_exits?.statement ?? fs.hw_exits?.statement ?? 'no hw_exits in the summary'),
      names: as.hw_exits?.names ?? null,
      rows: ((as.hw_exit_stats ?? []) as HwRow[]).map(({ isa, reason, samples, p50_ns, time_pct }) => ({ isa, reason, samples, p50_ns, time_pct })),
      record_runs: runs.length,
      record_hw_exits: runs.reduce((n, r) => n + Number(r.hw_exits ?? 0), 0),
      aggregate_hw_exits: ((as.run_split ?? []) as Array<{ hw_exits: number }>).reduce((n, r) => n + r.hw_exits, 0),
      split: split ? { runs: split.runs, hw_exits: split.hw_exits, guest_ns: split.guest_ns, kvm_ns: split.kvm_ns, vmm_ns: split.vmm_ns } : null,
      fields_without_events: available ? 0 : runs.filter((r) => 'hw_exits' in r || 'guest_ns' in r).length,
    };
  } catch (err) {
    return { available: false, statement: '', names: null, rows: [], record_runs: 0, record_hw_exits: 0, aggregate_hw_exits: 0, split: null, fields_without_events: 0, error: (err as Error).message };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The verdict: on a kernel with kvm-intel / kvm-amd loaded, hardware exits counted by both captures alike,
 * every reason named by the kernel; elsewhere (PVM, KVM built in without them) n/a — but only if the
 * statement says so and no record carries the fields.
 */
export function hwCheckState(vendor: string | null, h: HwResult | undefined): { state: 'ok' | 'fail' | 'n/a'; detail: string } {
  if (!h) return { state: 'n/a', detail: 'not run' };
  if (h.error) return { state: 'fail', detail: h.error };
  const top = h.rows.slice(0, 3).map((r) => `${r.reason} ${r.samples}`).join(', ');
  if (vendor) {
    const named = h.rows.length > 0 && h.rows.every((r) => !/^(0x[0-9a-f]+|\d+)$/.test(r.reason));
    const same = h.record_hw_exits === h.aggregate_hw_exits && h.record_hw_exits > 0;
    const pass = h.available && named && same;
    return { state: pass ? 'ok' : 'fail', detail: `${h.rows[0]?.isa ?? '?'}: ${top || 'none'}; ${h.record_hw_exits} in ${h.record_runs} KVM_RUNs (records) vs ${h.aggregate_hw_exits} (aggregate)${pass ? '' : `; ${h.statement}`}` };
  }
  const said = /does not fire/.test(h.statement) && !h.available && h.fields_without_events === 0;
  return { state: said ? 'n/a' : 'fail', detail: said ? h.statement : `expected the "does not fire" statement and no fields: ${h.statement}` };
}
