/**
 * The workloads the tracers are measured against. Each is a KVM exit loop with a fixed number of exits that
 * reports how long its loop took (`elapsed_s` in its JSON summary), so node start-up and VM set-up — slowed
 * very differently by a ptrace tracer than by a BPF one — stay out of the comparison:
 *  - the reference guest (`kvm-trace guest --scenario pio-out|mmio-write --json`), the tool's own ground truth;
 *  - kvm-loop, the same loop in C built on the spot with cc, comparable with ../shared/HOST.md's numbers.
 *
 * Every workload starts behind a gate (`sh -c 'read _; exec …'`): the process exists, so a tracer can attach
 * to its pid before it makes its first KVM ioctl, and exec keeps that pid.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cliMain, cLoopSource } from './paths.js';

export type WorkloadId = 'guest-pio-1' | 'guest-pio-4' | 'guest-mmio-1' | 'c-pio-1' | 'c-pio-4' | 'c-mmio-1';
export const ALL_WORKLOADS: WorkloadId[] = ['guest-pio-1', 'guest-pio-4', 'guest-mmio-1', 'c-pio-1', 'c-pio-4', 'c-mmio-1'];
export const DEFAULT_WORKLOADS: WorkloadId[] = ['guest-pio-1', 'guest-pio-4', 'guest-mmio-1', 'c-pio-1'];

export interface Workload {
  id: WorkloadId;
  label: string;
  kind: 'guest' | 'c';
  loop: 'pio' | 'mmio';
  vcpus: number;
  /** argv (program first) making about `exits` exits in total. */
  argv(exits: number): string[];
}

/** What a finished workload reported. */
export interface WorkloadResult {
  elapsed_s: number;
  /** Exits of every reason, all vCPUs. */
  exits: number;
  /**
   * 'loop': the KVM_RUN loops only (kvm-loop's loop_s; the guest's per-vCPU loop_ns, slowest vCPU);
   * 'run': the workload's whole elapsed_s (VM and thread set-up included);
   * 'wall': it reported no time, the bench's clock from the gate to its exit was used.
   */
  timing: 'loop' | 'run' | 'wall';
}

export function describeWorkload(id: WorkloadId): Omit<Workload, 'argv'> {
  const [kind, loop, n] = id.split('-') as ['guest' | 'c', 'pio' | 'mmio', string];
  const vcpus = Number(n);
  const who = kind === 'guest' ? 'reference guest' : 'C kvm-loop';
  return { id, kind, loop, vcpus, label: `${who} ${loop.toUpperCase()}, ${vcpus} vCPU${vcpus > 1 ? 's' : ''}` };
}

/** Per-vCPU exits so the whole run makes about `exits` (the C loop counts per vCPU). */
function perVcpu(exits: number, vcpus: number): number {
  return Math.max(1, Math.ceil(exits / vcpus));
}

export function makeWorkload(id: WorkloadId, cLoopBinary: string | null, guestExitsPerVcpu: boolean): Workload {
  const d = describeWorkload(id);
  if (d.kind === 'c') {
    if (!cLoopBinary) throw new Error('kvm-loop was not built');
    return { ...d, argv: (exits) => [cLoopBinary, d.loop, String(perVcpu(exits, d.vcpus)), String(d.vcpus)] };
  }
  const scenario = d.loop === 'pio' ? 'pio-out' : 'mmio-write';
  return {
    ...d,
    argv: (exits) => [
      process.execPath,
      cliMain,
      'guest',
      '--scenario',
      scenario,
      '--exits',
      String(guestExitsPerVcpu ? perVcpu(exits, d.vcpus) : exits),
      '--vcpus',
      String(d.vcpus),
      '--json',
    ],
  };
}

/** argv of the gated form of `argv`: it waits for one line on stdin, then execs (same pid). */
export function gated(argv: string[]): string[] {
  return ['/bin/sh', '-c', 'read -r _go; exec "$@"', 'kvm-bench-gate', ...argv];
}

/** Parse a workload's JSON summary (the last JSON object line of its stdout). */
export function parseWorkloadOutput(stdout: string, wallSeconds: number): WorkloadResult {
  const lines = stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i--) {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(lines[i]) as Record<string, unknown>;
    } catch {
      continue;
    }
    const exits = countExits(o.exits);
    if (exits === null) continue;
    const loop = typeof o.loop_s === 'number' ? o.loop_s : slowestVcpuLoop(o.per_vcpu);
    if (loop !== null && loop > 0) return { elapsed_s: loop, exits, timing: 'loop' };
    const elapsed = typeof o.elapsed_s === 'number' ? o.elapsed_s : typeof o.elapsed_ms === 'number' ? o.elapsed_ms / 1000 : null;
    if (elapsed !== null && elapsed > 0) return { elapsed_s: elapsed, exits, timing: 'run' };
    return { elapsed_s: wallSeconds, exits, timing: 'wall' };
  }
  throw new Error('the workload printed no JSON summary with "exits"');
}

/**
 * The guest's loop time: per vCPU the sum of its scenarios' loop_ns; the vCPUs run in parallel, so the run's
 * loop time is the slowest one's. null when the summary has no per-vCPU loop times.
 */
function slowestVcpuLoop(perVcpu: unknown): number | null {
  if (!Array.isArray(perVcpu) || perVcpu.length === 0) return null;
  let slowest = 0;
  for (const v of perVcpu) {
    const scenarios = (v as { scenarios?: Array<{ loop_ns?: unknown }> })?.scenarios;
    if (!Array.isArray(scenarios)) return null;
    let ns = 0;
    for (const sc of scenarios) {
      if (typeof sc?.loop_ns !== 'number') return null;
      ns += sc.loop_ns;
    }
    slowest = Math.max(slowest, ns);
  }
  return slowest / 1e9;
}

/** Sum of an `exits` field: a number, {"IO":n,"HLT":1,…}, or per-vCPU [{…}]. */
function countExits(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (Array.isArray(v)) {
    let sum = 0;
    for (const e of v) {
      const n = countExits((e as { exits?: unknown })?.exits ?? e);
      if (n === null) return null;
      sum += n;
    }
    return sum;
  }
  if (v && typeof v === 'object') {
    let sum = 0;
    for (const n of Object.values(v)) if (typeof n === 'number') sum += n;
    return sum;
  }
  return null;
}

/** Build kvm-loop with the machine's cc into `dir`. Returns the binary path, or a reason it could not. */
export function buildCLoop(dir: string): { binary: string } | { reason: string } {
  const cc = ['cc', 'gcc'].find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0);
  if (!cc) return { reason: 'no C compiler (cc) installed' };
  if (!existsSync(cLoopSource)) return { reason: `${cLoopSource} missing` };
  const binary = join(dir, 'kvm-loop');
  const r = spawnSync(cc, ['-O2', '-Wall', '-o', binary, cLoopSource, '-lpthread'], { encoding: 'utf8' });
  if (r.status !== 0) return { reason: `cc failed: ${(r.stderr || r.stdout).trim().split('\n')[0]}` };
  return { binary };
}

/** Whether the built CLI has a subcommand (`kvm-trace --help` lists it). */
export function cliHasCommand(name: string): boolean {
  if (!existsSync(cliMain)) return false;
  const r = spawnSync(process.execPath, [cliMain, '--help'], { encoding: 'utf8', timeout: 30_000 });
  return new RegExp(`^\\s+${name}\\b`, 'm').test(r.stdout ?? '');
}

/** The `--help` text of a CLI subcommand ('' when it has none). */
export function cliHelp(name: string): string {
  if (!existsSync(cliMain)) return '';
  const r = spawnSync(process.execPath, [cliMain, name, '--help'], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 ? r.stdout : '';
}
