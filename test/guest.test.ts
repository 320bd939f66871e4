/**
 * The reference guest run in-process through runGuest (vCPU workers load dist/, so `npm run build` first;
 * npm test's bootstrap does it): exact exit counts, one thread per vCPU, the ground-truth log agreeing with
 * the result, what the kernel did with deliberately placed argument buffers, guest faults, a missing KVM
 * device, abort, and no fd left open on any of those paths.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gettid } from '../src/ffi/libc.js';
import { expectedFlags, GuestAborted, GuestFault, GuestUsageError, runGuest, type GtBuffer, type GtIoctlRecord, type GtRecord } from '../src/guest/index.js';

const isRoot = process.getuid?.() === 0;
const haveKvm = existsSync('/dev/kvm');
const kvmOk = haveKvm && isRoot;
if (!kvmOk) console.log(`guest.test: skipping reference-guest runs: ${!haveKvm ? 'no /dev/kvm' : 'not root'}`);

const fdCount = (): number => readdirSync('/proc/self/fd').length;
const readLog = (path: string): GtRecord[] =>
  readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as GtRecord);
const ioctls = (log: GtRecord[]): GtIoctlRecord[] => log.filter((r): r is GtIoctlRecord => r.type === 'ioctl');

describe.skipIf(!kvmOk)('reference guest (in process)', () => {
  let dir = '';
  let fds0 = 0;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvm-trace-guest-'));
    fds0 = fdCount();
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('pio-out --exits 10000: exactly 10000 IO exits and 1 HLT, every fd released', async () => {
    const r = await runGuest({ scenario: 'pio-out', exits: 10000 });
    expect(r.exits).toEqual({ IO: 10000, HLT: 1 });
    expect(r.vcpus).toBe(1);
    expect(r.per_vcpu[0].exits).toEqual({ IO: 10000, HLT: 1 });
    expect(BigInt(r.kvm_run[0].user_addr!) % 4096n).toBe(0n);
    expect(r.kvm_run[0].mmap_size).toBeGreaterThanOrEqual(8192);
    // 10001 KVM_RUN + vCPU setup/check + system/VM setup + the long-mode probe: at least the runs.
    expect(r.ioctls).toBeGreaterThan(10001);
    expect(typeof r.long_mode).toBe('boolean');
    expect(r.long_mode_detail.length).toBeGreaterThan(0);
    expect(fdCount()).toBe(fds0);
  });

  it('mixed --vcpus 4: four vCPU threads, per-vCPU counts, and a log that agrees with the result', async () => {
    const path = join(dir, 'mixed.jsonl');
    const r = await runGuest({ scenario: 'mixed', vcpus: 4, exits: 100, log: path });
    expect(r.per_vcpu.map((v) => v.exits)).toEqual(Array(4).fill({ IO: 40, MMIO: 40, HLT: 21 }));
    expect(r.exits).toEqual({ IO: 160, MMIO: 160, HLT: 84 });
    const log = readLog(path);
    const calls = ioctls(log);
    expect(calls.length).toBe(r.ioctls);
    const vcpuTids = new Set(r.per_vcpu.map((v) => v.tid));
    expect(vcpuTids.size).toBe(4);
    expect(vcpuTids.has(gettid())).toBe(false);
    // Only the long-mode probe's own vCPU runs on the main thread.
    const mainVcpuCalls = calls.filter((c) => c.fd_kind === 'vcpu' && !vcpuTids.has(c.tid));
    expect(new Set(mainVcpuCalls.map((c) => c.tid)), JSON.stringify({ main: gettid(), per: [...vcpuTids], odd: mainVcpuCalls.filter((c) => c.tid !== gettid()).slice(0, 4) })).toEqual(new Set([gettid()]));
    for (const v of r.per_vcpu) {
      // The long-mode probe's vCPU 0 runs on the main thread after the workers closed theirs, and may get
      // the same fd number as a worker's vCPU 0: only the vCPU threads' calls belong to the guest's vCPUs.
      const mine = calls.filter((c) => c.vcpu === v.vcpu && c.fd === v.fd && c.fd_kind === 'vcpu' && vcpuTids.has(c.tid));
      expect(new Set(mine.map((c) => c.tid))).toEqual(new Set([v.tid]));
      expect(mine.filter((c) => c.name === 'KVM_RUN').length).toBe(40 + 40 + 21);
      expect(log).toContainEqual({ type: 'kvm_run', vcpu: v.vcpu, fd: v.fd, tid: v.tid, user_addr: v.user_addr, mmap_size: r.kvm_run[0].mmap_size });
      expect(log).toContainEqual({ type: 'exits', vcpu: v.vcpu, counts: v.exits });
    }
    for (const c of calls) {
      expect(c.t1_ns).toBeGreaterThanOrEqual(c.t0_ns);
      expect(c.cmd).toMatch(/^0x[0-9a-f]{8}$/);
      expect(c.errno === null).toBe(c.ret >= 0);
    }
    const t0s = calls.map((c) => c.t0_ns);
    expect(t0s).toEqual([...t0s].sort((a, b) => a - b));
    const fdOps = log.filter((x) => x.type === 'fd');
    expect(fdOps.filter((x) => x.op === 'open').map((x) => x.fd).sort()).toEqual(fdOps.filter((x) => x.op === 'close').map((x) => x.fd).sort());
    expect(log.at(-1)).toMatchObject({ type: 'summary', ioctls: r.ioctls, vcpus: 4, exits: r.exits });
    expect(fdCount()).toBe(fds0);
  });

  it('layout: the kernel accepted every aligned, misaligned, line-crossing and page-crossing buffer, and the data round-tripped', async () => {
    const path = join(dir, 'layout.jsonl');
    const r = await runGuest({ scenario: 'layout', vcpus: 2, log: path });
    const L = r.layout!;
    // The observed truth on this kernel: copy_from_user/copy_to_user take any address.
    expect(L.rejected, JSON.stringify(L.rejected)).toEqual([]);
    expect(L.accepted).toBe(L.calls);
    expect(L.mismatches).toEqual([]);
    expect(L.roundtrip_ok).toBe(L.roundtrips);
    for (const intent of ['aligned', 'misaligned', 'line-cross', 'page-cross'] as const) {
      expect(L.by_intent[intent].calls).toBeGreaterThan(0);
      expect(L.by_intent[intent].accepted).toBe(L.by_intent[intent].calls);
    }
    expect(L.verdict).toMatch(/^kernel accepted (\d+)\/\1 placed argument buffers/);
    // The guest ran from registers set through a placed buffer and read memory slots set through placed buffers.
    expect(r.exits).toEqual({ IO: 2, HLT: 2 });

    const placed = ioctls(readLog(path)).filter((c) => c.buffers && c.buffers.length > 0);
    const names = new Set(placed.map((c) => c.name));
    for (const n of ['KVM_SET_REGS', 'KVM_GET_REGS', 'KVM_SET_SREGS', 'KVM_GET_SREGS', 'KVM_SET_USER_MEMORY_REGION', 'KVM_GET_MSRS', 'KVM_SET_MSRS', 'KVM_GET_FPU', 'KVM_GET_VCPU_EVENTS', 'KVM_GET_SUPPORTED_CPUID']) {
      expect(names).toContain(n);
    }
    const bufs: GtBuffer[] = placed.flatMap((c) => c.buffers!);
    for (const b of bufs) {
      const f = expectedFlags(BigInt(b.addr), b.len, b.align);
      expect(b.expected).toEqual({ misaligned: f.misaligned, cacheline_cross: f.cacheline_cross });
    }
    expect(bufs.some((b) => b.expected.misaligned && !b.expected.cacheline_cross)).toBe(true);
    expect(bufs.some((b) => !b.expected.misaligned && b.expected.cacheline_cross)).toBe(true);
    expect(bufs.some((b) => !b.expected.misaligned && !b.expected.cacheline_cross)).toBe(true);
    expect(bufs.some((b) => b.what === 'kvm_msrs.entries')).toBe(true);
    for (const c of placed) expect(c.buffers![0].addr).toBe(c.arg); // the argument buffer is the ioctl's arg
    expect(ioctls(readLog(path)).find((c) => c.name === 'KVM_CHECK_EXTENSION' && c.fd_kind === 'vm')?.buffers).toEqual([]);
    expect(fdCount()).toBe(fds0);
  });

  it('all: every scenario on each vCPU, counts add up', async () => {
    const r = await runGuest({ scenario: 'all', vcpus: 2, exits: 50, probeLongMode: false });
    // per vCPU: pio-out 50+1, pio-in 50+1, mmio-write 50+1, mmio-read 50+1, hlt 50, mixed 10 iterations, layout 1+1
    expect(r.per_vcpu[0].exits).toEqual({ IO: 100 + 20 + 1, HLT: 4 + 50 + 11 + 1, MMIO: 100 + 20 });
    expect(r.long_mode_detail).toBe('not probed');
    expect(fdCount()).toBe(fds0);
  });

  it('a guest fault (triple fault -> KVM_EXIT_SHUTDOWN) is one clear error; fds released; log still written', async () => {
    const path = join(dir, 'fault.jsonl');
    await expect(runGuest({ scenario: 'fault', vcpus: 2, log: path })).rejects.toThrow(GuestFault);
    await expect(runGuest({ scenario: 'fault' })).rejects.toThrow(/^vCPU 0 \(scenario fault\): guest fault: KVM_EXIT_SHUTDOWN/);
    const log = readLog(path);
    const fdOps = log.filter((x) => x.type === 'fd');
    expect(fdOps.filter((x) => x.op === 'open').length).toBe(fdOps.filter((x) => x.op === 'close').length);
    expect(fdCount()).toBe(fds0);
  });

  it('a missing KVM device fails at open with ENOENT, nothing left open', async () => {
    await expect(runGuest({ kvmDevice: join(dir, 'no-such-kvm') })).rejects.toThrow(/^open .*no-such-kvm: ENOENT$/);
    expect(fdCount()).toBe(fds0);
  });

  it('aborting stops the vCPU loops and releases everything', async () => {
    const ac = new AbortController();
    const p = runGuest({ scenario: 'pio-out', vcpus: 2, exits: 50_000_000, probeLongMode: false }, ac.signal);
    setTimeout(() => ac.abort(), 300);
    await expect(p).rejects.toThrow(GuestAborted);
    expect(fdCount()).toBe(fds0);
  });
});

describe('reference guest options (no KVM needed)', () => {
  it.each([
    [{ scenario: 'nope' }, /unknown scenario 'nope' \(valid: pio-out, pio-in, mmio-write, mmio-read, hlt, mixed, layout, fault, all\)/],
    [{ vcpus: 0 }, /--vcpus must be an integer from 1 to 64/],
    [{ exits: -1 }, /--exits must be an integer/],
    [{ exits: 1.5 }, /--exits must be an integer/],
  ])('%j is a usage error', async (opts, msg) => {
    await expect(runGuest(opts)).rejects.toThrow(GuestUsageError);
    await expect(runGuest(opts)).rejects.toThrow(msg);
  });
});
