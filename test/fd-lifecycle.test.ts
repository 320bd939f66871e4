// The fd lifecycle against the real kernel (issue 10): a small C VMM (test/helpers/fd-vmm.c, built here
// with cc) dups, dup2s onto a tracked number, close_ranges, execs with O_CLOEXEC KVM fds, forks and opens
// /dev/kvm with openat2, while the real BPF programs trace it through the whole capture pipeline. What
// the capture says about fd kinds, kvm_run addresses and leaked fds must equal what the VMM says it did.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FdRecord, IoctlRecord, KvmRunRecord } from '../src/decode/records.js';
import { bpfSkipReason } from './bpf-support.js';
import { buildFdVmm, fdVmmSkipReason, stepOf, traceVmm as traceBin, type Step, type Traced } from './helpers/fd-vmm.js';

const skip = bpfSkipReason() ?? fdVmmSkipReason();
if (skip) console.log(`fd-lifecycle tests skipped: ${skip}`);

const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-fdvmm-'));
let bin = '';
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Trace every process named kt-fdvmm while the VMM runs `mode`; the capture ends when it has exited. */
const traceVmm = (mode: string, ...args: string[]): Promise<Traced> => traceBin(bin, [mode, ...args]);

const fdsOf = (t: Traced, pid: number): FdRecord[] => t.records.filter((r): r is FdRecord => r.type === 'fd' && r.pid === pid);
const ioctlsOf = (t: Traced, pid: number): IoctlRecord[] => t.records.filter((r): r is IoctlRecord => r.type === 'ioctl' && r.pid === pid);
const runsOf = (t: Traced, pid: number): KvmRunRecord[] => t.records.filter((r): r is KvmRunRecord => r.type === 'kvm_run' && r.pid === pid);
const leaked = (t: Traced, pid: number): Array<[number, string]> =>
  fdsOf(t, pid)
    .filter((r) => r.op === 'leak')
    .map((r): [number, string] => [r.fd, r.fd_kind])
    .sort((a, b) => a[0] - b[0]);
const num = (v: number | string): number => Number(v);

/** The one vCPU's kvm_run: user address the VMM mapped, kernel address from KVM_RUN. */
function expectOneKvmRun(t: Traced, setup: Step): void {
  const runs = runsOf(t, num(setup.pid));
  expect(runs.map((r) => [r.vcpu, r.user_addr])).toEqual([[0, setup.run]]);
  expect(runs[0].kernel_addr).toMatch(/^0xffff[0-9a-f]{12}$/);
}

describe.skipIf(skip !== undefined)('fd lifecycle on the real kernel', () => {
  beforeAll(() => {
    bin = buildFdVmm(dir);
  });

  it('dup, dup2, dup3, fcntl(F_DUPFD, F_DUPFD_CLOEXEC) of a vCPU fd: each copy is that vCPU; closing the original leaves them', async () => {
    const t = await traceVmm('dup');
    const s = stepOf(t, 'setup');
    const d = stepOf(t, 'dup');
    const pid = num(s.pid);
    const copies = [d.dup, d.dup2, d.dup3, d.dupfd, d.dupfd_cloexec].map(num);
    const dups = fdsOf(t, pid).filter((r) => r.via === 'dup');
    expect(dups.map((r) => [r.fd, r.fd_kind, r.vcpu])).toEqual(copies.map((fd) => [fd, 'vcpu', 0]));
    expect(dups[0].dup_of).toBe(num(s.vcpu));
    expect(fdsOf(t, pid).filter((r) => r.op === 'close').map((r) => r.fd)).toEqual([num(s.vcpu)]);
    // KVM_RUN through the copies: still vCPU 0 of VM 0.
    const runs = ioctlsOf(t, pid).filter((r) => r.name === 'KVM_RUN');
    expect(runs.map((r) => [r.fd, r.fd_kind, r.vm, r.vcpu, r.exit?.reason])).toEqual([
      [num(s.vcpu), 'vcpu', 0, 0, 'HLT'],
      [copies[0], 'vcpu', 0, 0, 'HLT'],
      [copies[4], 'vcpu', 0, 0, 'HLT'],
    ]);
    expectOneKvmRun(t, s);
    expect(leaked(t, pid)).toEqual([
      [num(s.kvm), 'system'],
      [num(s.vm), 'vm'],
      ...copies.map((fd): [number, string] => [fd, 'vcpu']),
    ]);
    expect(t.summary.decode_errors).toBe(0);
  });

  it('aggregate mode: a vCPU run through its copies is one vCPU, and each re-entry through a copy is timed in the kernel', async () => {
    const t = await traceBin(bin, ['dup'], [], { aggregate: true });
    const pid = num(stepOf(t, 'setup').pid);
    const rows = (t.summary.vmm_handling?.vcpus ?? []).filter((v) => v.pid === pid);
    // Three KVM_RUNs (original fd, then two copies), one thread: two re-entries, both timed, one return left.
    expect(rows.map((v) => [v.vm, v.vcpu, v.total.count, v.pending])).toEqual([[0, 0, 2, 1]]);
    expect(rows[0].by_exit.map((e) => [e.key, e.count])).toEqual([['HLT', 2]]);
    expect(t.summary.vmm_handling!.untimed).toBe(0);
  });

  it('dup2 of an unrelated file onto the vCPU number: reported closed, and its offset-0 mmap is no kvm_run', async () => {
    const t = await traceVmm('dup2-unrelated');
    const s = stepOf(t, 'setup');
    const d = stepOf(t, 'dup2');
    const pid = num(s.pid);
    expect(fdsOf(t, pid).filter((r) => r.via === 'dup2').map((r) => [r.fd, r.fd_kind])).toEqual([
      [num(s.vcpu), 'vcpu'],
      [num(s.kvm), 'system'],
    ]);
    expectOneKvmRun(t, s);
    expect(runsOf(t, pid).some((r) => r.user_addr === d.other)).toBe(false);
    // The /dev/kvm number became a copy of the VM fd: KVM_CREATE_VCPU on it is a VM call of VM 0.
    const create = ioctlsOf(t, pid).filter((r) => r.name === 'KVM_CREATE_VCPU').at(-1)!;
    expect(create).toMatchObject({ fd: num(s.kvm), fd_kind: 'vm', vm: 0, ret: num(d.vcpu1) });
    expect(leaked(t, pid)).toEqual([
      [num(s.kvm), 'vm'],
      [num(s.vm), 'vm'],
      [num(d.vcpu1), 'vcpu'],
    ]);
  });

  it('close_range closes every tracked fd in the range; a file later on a freed number is not a KVM fd', async () => {
    const t = await traceVmm('close-range');
    const s = stepOf(t, 'setup');
    const c = stepOf(t, 'close_range');
    const pid = num(s.pid);
    expect(fdsOf(t, pid).filter((r) => r.via === 'close_range').map((r) => [r.fd, r.fd_kind]).sort((a, b) => num(a[0]) - num(b[0]))).toEqual([
      [num(s.vm), 'vm'],
      [num(s.vcpu), 'vcpu'],
      [num(c.dup), 'vcpu'],
    ]);
    expect(runsOf(t, pid).some((r) => r.user_addr === c.other)).toBe(false);
    expectOneKvmRun(t, s);
    expect(leaked(t, pid)).toEqual([[num(s.kvm), 'system']]);
  });

  it('execve closes the O_CLOEXEC KVM fds (also one marked by CLOSE_RANGE_CLOEXEC) and keeps the others', async () => {
    const t = await traceVmm('exec');
    const s = stepOf(t, 'setup');
    const e = stepOf(t, 'exec');
    const a = stepOf(t, 'after_exec');
    const pid = num(s.pid);
    expect(num(a.pid)).toBe(pid);
    expect(fdsOf(t, pid).filter((r) => r.via === 'execve').map((r) => [r.fd, r.fd_kind]).sort((x, y) => num(x[0]) - num(y[0]))).toEqual([
      [num(s.kvm), 'system'],
      [num(s.vm), 'vm'],
      [num(s.vcpu), 'vcpu'],
      [num(e.k2), 'system'],
    ]);
    // After the exec: the kept VM fd is still a VM fd (KVM answers EIO: another mm), the new file on a freed
    // number is nothing, and its offset-0 mapping is no kvm_run.
    const after = ioctlsOf(t, pid).at(-1)!;
    expect(after).toMatchObject({ fd: num(e.keep), fd_kind: 'vm', name: 'KVM_CHECK_EXTENSION', errno: 'EIO' });
    expect(runsOf(t, pid).some((r) => r.user_addr === a.other)).toBe(false);
    expect(leaked(t, pid)).toEqual([[num(e.keep), 'vm']]);
  });

  it("fork: the child's copies are its own (kind, VM, leaks); the parent's stay", async () => {
    const t = await traceVmm('fork');
    const s = stepOf(t, 'setup');
    const c = stepOf(t, 'child');
    const parent = num(s.pid);
    const child = num(c.pid);
    expect(fdsOf(t, child).filter((r) => r.via === 'fork').map((r) => [r.fd, r.fd_kind, r.parent])).toEqual([
      [num(s.kvm), 'system', parent],
      [num(s.vm), 'vm', parent],
      [num(s.vcpu), 'vcpu', parent],
    ]);
    expect(ioctlsOf(t, child)).toEqual([expect.objectContaining({ name: 'KVM_CREATE_VCPU', fd: num(s.vm), fd_kind: 'vm', vm: 0, errno: 'EIO' })]);
    expect(leaked(t, child)).toEqual([
      [num(s.kvm), 'system'],
      [num(s.vm), 'vm'],
      [num(s.vcpu), 'vcpu'],
    ]);
    expect(leaked(t, parent)).toEqual([]);
    expect(ioctlsOf(t, parent).filter((r) => r.name === 'KVM_RUN').map((r) => [r.fd_kind, r.vcpu])).toEqual([
      ['vcpu', 0],
      ['vcpu', 0],
    ]);
    expectOneKvmRun(t, s);
    expect(runsOf(t, child)).toEqual([]);
  });

  it('openat2 of /dev/kvm is an open of the system fd', async () => {
    const t = await traceVmm('openat2');
    const s = stepOf(t, 'setup');
    const pid = num(s.pid);
    expect(fdsOf(t, pid)[0]).toMatchObject({ op: 'open', fd: num(s.kvm), fd_kind: 'system' });
    expect(ioctlsOf(t, pid)[0]).toMatchObject({ fd: num(s.kvm), fd_kind: 'system', name: 'KVM_CREATE_VM' });
    expectOneKvmRun(t, s);
  });

  it('files are told by what they are, not their names: /dev/kvm as another node is /dev/kvm; a disk file named kvm-vcpu:0 is no vCPU', async () => {
    const t = await traceVmm('names', dir);
    const s = stepOf(t, 'names');
    const pid = num(s.pid);
    expect(num(s.version)).toBe(12);
    expect(fdsOf(t, pid)[0]).toMatchObject({ op: 'open', fd: num(s.kvm), fd_kind: 'system' });
    expect(ioctlsOf(t, pid)[0]).toMatchObject({ fd: num(s.kvm), fd_kind: 'system', name: 'KVM_GET_API_VERSION', ret: 12 });
    // The impostor: the kernel said ENOTTY (25) and the capture must not read its private_data as a kvm_vcpu.
    expect([num(s.fake_ret), num(s.fake_errno)]).toEqual([-1, 25]);
    const fake = ioctlsOf(t, pid).filter((r) => r.fd === num(s.fake));
    expect(fake.map((r) => [r.name, r.errno, r.fd_kind === 'vcpu', r.vcpu ?? null])).toEqual([['KVM_RUN', 'ENOTTY', false, null]]);
    expect(runsOf(t, pid)).toEqual([]);
  });
});
