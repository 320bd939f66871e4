/**
 * What the decoder knows about each traced process: which of its fds are /dev/kvm, VM, vCPU or device fds
 * (learned from the open of /dev/kvm and the return values of KVM_CREATE_VM / KVM_CREATE_VCPU /
 * KVM_CREATE_DEVICE), the VM index (per process, in creation order) each belongs to, and where each vCPU's
 * struct kvm_run is mapped (user address from mmap, kernel address from KVM_RUN).
 *
 * Processes already running when tracing starts are seeded from /proc: /proc/PID/fd symlinks
 * (`/dev/kvm`, `anon_inode:kvm-vm`, `anon_inode:kvm-vcpu:N`, `anon_inode:kvm-<device>`) and existing kvm_run
 * mappings in /proc/PID/maps (`anon_inode:kvm-vcpu:N` at file offset 0).
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { FdKind } from './records.js';

export interface FdInfo {
  kind: FdKind;
  /** VM index in the process (creation order), or null when not known. */
  vm: number | null;
  /** vCPU id for vCPU fds. */
  vcpu: number | null;
}

/** One vCPU's kvm_run mapping, joined from mmap (user side) and KVM_RUN (kernel side). */
export interface RunInfo {
  /** The vCPU fd (-1 when the mapping outlived its fd). */
  fd: number;
  vcpu: number | null;
  kernel_addr: string | null;
  user_addr: string | null;
  mmap_size: number | null;
  /** Kernel address as two u32 halves: KVM_RUN records compare against these without building a string. */
  kLo: number;
  kHi: number;
  /** A kvm_run record with both addresses was emitted. */
  emitted: boolean;
}

export class ProcessState {
  readonly fds = new Map<number, FdInfo>();
  /** vCPU fd → its kvm_run mapping. */
  readonly runs = new Map<number, RunInfo>();
  /** VM fd → VM index. */
  private readonly vmIndex = new Map<number, number>();
  private nextVm = 0;

  constructor(readonly pid: number) {}

  /** Register a VM fd; returns its FdInfo with the next VM index. */
  addVm(fd: number): FdInfo {
    const index = this.nextVm++;
    this.vmIndex.set(fd, index);
    const info: FdInfo = { kind: 'vm', vm: index, vcpu: null };
    this.fds.set(fd, info);
    return info;
  }

  /** The VM index of a VM fd (or of the VM a vCPU/device fd belongs to). */
  vmOf(fd: number): number | null {
    return this.vmIndex.get(fd) ?? this.fds.get(fd)?.vm ?? null;
  }

  /** The kvm_run tracking entry of vCPU fd `fd` (created on first use). */
  run(fd: number): RunInfo {
    let r = this.runs.get(fd);
    if (!r) {
      r = { fd, vcpu: this.fds.get(fd)?.vcpu ?? null, kernel_addr: null, user_addr: null, mmap_size: null, kLo: 0, kHi: 0, emitted: false };
      this.runs.set(fd, r);
    }
    return r;
  }

  /**
   * fd is gone (close, close_range, execve, or replaced by dup2): forget what it was. Its kvm_run mapping
   * outlives it — a later fd with the same number is another file and must not inherit it — so a mapping
   * not reported yet is kept under a key no fd can have, to be reported at the end.
   */
  closeFd(fd: number): FdInfo | undefined {
    const info = this.fds.get(fd);
    this.fds.delete(fd);
    this.vmIndex.delete(fd);
    const run = this.runs.get(fd);
    if (run) {
      this.runs.delete(fd);
      const shared = [...this.runs.values()].includes(run); // a dup of this vCPU fd still refers to it
      if (!shared && !run.emitted && (run.kernel_addr !== null || run.user_addr !== null)) this.runs.set(this.nextDetached--, run);
    }
    return info;
  }

  /** `newFd` became a copy of `oldFd` (dup family): same file, same VM/vCPU, same kvm_run. */
  dupFd(oldFd: number, newFd: number, info: FdInfo): void {
    this.closeFd(newFd);
    this.fds.set(newFd, { ...info });
    const vm = this.vmIndex.get(oldFd);
    if (vm !== undefined) this.vmIndex.set(newFd, vm);
    // A vCPU copied before it was mapped or run still has one kvm_run: share the entry now, so an mmap
    // through one fd and a KVM_RUN through the other join.
    const run = info.kind === 'vcpu' && this.fds.has(oldFd) ? this.run(oldFd) : this.runs.get(oldFd);
    if (run) this.runs.set(newFd, run);
  }

  /** A forked child: copies of the parent's fds (same numbers, same VMs); its kvm_run mappings are not its own to run. */
  inheritFrom(parent: ProcessState): number {
    for (const [fd, info] of parent.fds) this.fds.set(fd, { ...info });
    for (const [fd, vm] of parent.vmIndex) this.vmIndex.set(fd, vm);
    this.nextVm = Math.max(this.nextVm, parent.nextVm);
    return parent.fds.size;
  }

  /** Keys below every fd number for kvm_run mappings whose fd is gone. */
  private nextDetached = -0x80000000;

  /** Nothing known about this process (no fds, no mapping left to report): safe to forget. */
  get empty(): boolean {
    return this.fds.size === 0 && this.runs.size === 0;
  }
}

export interface SeedResult {
  pid: number;
  fds: number;
  vms: number;
  vcpus: number;
  devices: number;
  /** kvm_run mappings found in /proc/PID/maps. */
  runs: number;
}

const VCPU_LINK = /^anon_inode:kvm-vcpu:(\d+)$/;
const DEVICE_LINK = /^anon_inode:kvm-(.+)$/;
// "start-end perms offset dev inode    path"
const MAPS_LINE = /^([0-9a-f]+)-([0-9a-f]+)\s+\S+\s+([0-9a-f]+)\s+\S+\s+\d+\s+anon_inode:kvm-vcpu:(\d+)\s*$/;

/** /proc/PID/comm without its newline, or undefined when the process is gone. */
export function procComm(pid: number, procRoot = '/proc'): string | undefined {
  try {
    return readFileSync(join(procRoot, String(pid), 'comm'), 'utf8').trimEnd();
  } catch {
    return undefined;
  }
}

/** Classify a /proc/PID/fd symlink target; undefined for anything that is not a KVM fd. */
export function classifyFdLink(target: string): { kind: FdKind; vcpu: number | null } | undefined {
  if (target === '/dev/kvm') return { kind: 'system', vcpu: null };
  if (target === 'anon_inode:kvm-vm') return { kind: 'vm', vcpu: null };
  const v = VCPU_LINK.exec(target);
  if (v) return { kind: 'vcpu', vcpu: Number(v[1]) };
  if (DEVICE_LINK.test(target)) return { kind: 'device', vcpu: null };
  return undefined;
}

/** kvm_run mappings (file offset 0 of a vCPU fd) listed in a /proc/PID/maps text. */
export function parseKvmRunMaps(maps: string): Array<{ vcpu: number; user_addr: string; mmap_size: number }> {
  const out: Array<{ vcpu: number; user_addr: string; mmap_size: number }> = [];
  for (const line of maps.split('\n')) {
    const m = MAPS_LINE.exec(line);
    if (!m || BigInt(`0x${m[3]}`) !== 0n) continue;
    const start = BigInt(`0x${m[1]}`);
    out.push({ vcpu: Number(m[4]), user_addr: `0x${start.toString(16)}`, mmap_size: Number(BigInt(`0x${m[2]}`) - start) });
  }
  return out;
}

/**
 * Pids under `procRoot` that hold at least one KVM fd (for seeding when tracing is not limited to given
 * pids). Processes that vanish or whose fds we may not read are skipped.
 */
export function pidsWithKvmFds(procRoot = '/proc'): number[] {
  const out: number[] = [];
  for (const name of readdirSync(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    let fds: string[];
    try {
      fds = readdirSync(join(procRoot, name, 'fd'));
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(join(procRoot, name, 'fd', fd));
      } catch {
        continue;
      }
      if (classifyFdLink(target)) {
        out.push(Number(name));
        break;
      }
    }
  }
  return out.sort((a, b) => a - b);
}

/** What /proc showed of one process at attach: its KVM fd links, and its maps lines of vCPU mappings. */
export interface ProcSeed {
  pid: number;
  fds: Array<{ fd: number; target: string }>;
  /** The /proc/PID/maps lines that map a vCPU fd (the rest is not needed). */
  maps: string;
}

/** Read process `pid`'s ProcSeed. Throws when /proc/PID is unreadable (no such process). */
export function readProcSeed(pid: number, procRoot = '/proc'): ProcSeed {
  const dir = join(procRoot, String(pid));
  const fds: ProcSeed['fds'] = [];
  for (const name of readdirSync(join(dir, 'fd'))) {
    let target: string;
    try {
      target = readlinkSync(join(dir, 'fd', name));
    } catch {
      continue; // closed while we looked
    }
    if (classifyFdLink(target)) fds.push({ fd: Number(name), target });
  }
  let maps = '';
  try {
    maps = readFileSync(join(dir, 'maps'), 'utf8');
  } catch {
    // maps unreadable (process gone): the fds are still useful
  }
  return { pid, fds, maps: maps.split('\n').filter((l) => l.includes('anon_inode:kvm-vcpu:')).join('\n') };
}

/**
 * Per-process state of every traced process. A process leaves the table with its exit record; one that
 * never held a tracked fd gets none (the kernel reports exits only of processes holding KVM fds), so past
 * `maxProcesses` the oldest states that know nothing (no fd, no mapping to report) are dropped: the table
 * stays bounded over a capture of any length.
 */
export class ProcessTable {
  private readonly procs = new Map<number, ProcessState>();
  private last: ProcessState | undefined;
  /** Empty process states dropped to keep the table within maxProcesses. */
  evicted = 0;

  /** Size at which the next sweep runs: after a sweep that could not free enough, not before it grew again. */
  private sweepAt: number;

  constructor(private readonly maxProcesses = 16384) {
    this.sweepAt = maxProcesses;
  }

  get size(): number {
    return this.procs.size;
  }

  get(pid: number): ProcessState {
    const last = this.last;
    if (last && last.pid === pid) return last;
    let p = this.procs.get(pid);
    if (!p) {
      if (this.procs.size >= this.sweepAt) this.evictEmpty();
      p = new ProcessState(pid);
      this.procs.set(pid, p);
    }
    this.last = p;
    return p;
  }

  /** Process `child` was forked from `parent`: it starts with copies of the parent's fds. */
  fork(parent: number, child: number): ProcessState {
    this.remove(child); // a pid reused after an exit we did not see
    const c = this.get(child);
    const p = this.procs.get(parent);
    if (p) c.inheritFrom(p);
    return c;
  }

  /** Drop the oldest states that know nothing (Map order is insertion order), down to 3/4 of the limit. */
  private evictEmpty(): void {
    const target = Math.floor((this.maxProcesses * 3) / 4);
    for (const [pid, p] of this.procs) {
      if (this.procs.size <= target) break;
      if (!p.empty) continue;
      this.procs.delete(pid);
      if (this.last === p) this.last = undefined;
      this.evicted++;
    }
    this.sweepAt = Math.max(this.maxProcesses, this.procs.size + Math.ceil(this.maxProcesses / 4));
  }

  /** Forget a process (it exited); returns its final state. */
  remove(pid: number): ProcessState | undefined {
    const p = this.procs.get(pid);
    this.procs.delete(pid);
    if (this.last?.pid === pid) this.last = undefined;
    return p;
  }

  all(): IterableIterator<ProcessState> {
    return this.procs.values();
  }

  /**
   * Seed process `pid` from /proc (for processes running before tracing started): readProcSeed + seed.
   * Throws when /proc/PID is unreadable (no such process).
   */
  seedFromProc(pid: number, procRoot = '/proc'): SeedResult {
    return this.seed(readProcSeed(pid, procRoot));
  }

  /**
   * Seed a process from what its /proc showed (readProcSeed; a binary capture keeps it to replay the same
   * state). VM indices follow fd order (the real creation order is not recorded anywhere); a vCPU or device
   * fd gets the VM index only when the process has exactly one VM.
   */
  seed(s: ProcSeed): SeedResult {
    const p = this.get(s.pid);
    const res: SeedResult = { pid: s.pid, fds: 0, vms: 0, vcpus: 0, devices: 0, runs: 0 };
    const found: Array<{ fd: number; kind: FdKind; vcpu: number | null }> = [];
    for (const l of s.fds) {
      const c = classifyFdLink(l.target);
      if (c) found.push({ fd: l.fd, ...c });
    }
    found.sort((a, b) => a.fd - b.fd);
    for (const f of found.filter((x) => x.kind === 'vm')) {
      if (!p.fds.has(f.fd)) p.addVm(f.fd);
      res.vms++;
    }
    const onlyVm = res.vms === 1 ? p.vmOf(found.find((x) => x.kind === 'vm')!.fd) : null;
    for (const f of found) {
      if (f.kind === 'vm') continue;
      if (!p.fds.has(f.fd)) p.fds.set(f.fd, { kind: f.kind, vm: f.kind === 'system' ? null : onlyVm, vcpu: f.vcpu });
      if (f.kind === 'vcpu') res.vcpus++;
      if (f.kind === 'device') res.devices++;
    }
    res.fds = found.length;
    for (const m of parseKvmRunMaps(s.maps)) {
      const vcpuFd = found.find((x) => x.kind === 'vcpu' && x.vcpu === m.vcpu)?.fd;
      // A mapping whose fd was already closed: keyed apart per vCPU, reported with fd -1.
      const r = p.run(vcpuFd ?? -1 - m.vcpu);
      if (vcpuFd === undefined) r.fd = -1;
      r.vcpu = m.vcpu;
      r.user_addr = m.user_addr;
      r.mmap_size = m.mmap_size;
      res.runs++;
    }
    return res;
  }
}
