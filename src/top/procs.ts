/**
 * The processes `top` lists, from /proc: every process holding a KVM fd (or the -p pids), with its name,
 * how many VM fds it holds and the ids of its vCPU fds (`anon_inode:kvm-vcpu:N`). Cheap enough for once a
 * second: one readdir of /proc plus the fd links of each candidate.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { classifyFdLink, pidsWithKvmFds, procComm } from '../decode/processes.js';
import type { TopProcess } from './snapshot.js';

/** One process's KVM fds; undefined when it is gone or its fds cannot be read. */
export function kvmProcess(pid: number, procRoot = '/proc'): TopProcess | undefined {
  const comm = procComm(pid, procRoot);
  if (comm === undefined) return undefined;
  let fds: string[];
  try {
    fds = readdirSync(join(procRoot, String(pid), 'fd'));
  } catch {
    return undefined;
  }
  let vms = 0;
  const vcpus: number[] = [];
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(join(procRoot, String(pid), 'fd', fd));
    } catch {
      continue;
    }
    const c = classifyFdLink(target);
    if (c?.kind === 'vm') vms++;
    else if (c?.kind === 'vcpu' && c.vcpu !== null) vcpus.push(c.vcpu);
  }
  return { pid, comm, vms, vcpus: vcpus.sort((a, b) => a - b) };
}

/**
 * The traced processes: `pids` when given (those still alive), else every process with a KVM fd; with
 * `comm`, only those of that name (the kernel compares the first 15 bytes, so do we).
 */
export function kvmProcesses(opts: { pids?: readonly number[]; comm?: string }, procRoot = '/proc'): TopProcess[] {
  const candidates = opts.pids?.length ? [...opts.pids] : pidsWithKvmFds(procRoot);
  const comm = opts.comm?.slice(0, 15);
  const out: TopProcess[] = [];
  for (const pid of candidates) {
    const p = kvmProcess(pid, procRoot);
    if (p && (comm === undefined || p.comm === comm)) out.push(p);
  }
  return out;
}
