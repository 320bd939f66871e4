// Real kernel: load + attach the tracepoint strategy, drive a real KVM guest from this process, and check
// what arrives in the ring (cmd, ret, tid, fd kinds, kvm_run addresses, PIO data); filters; teardown.
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotSupportedError } from '../src/ffi/errors.js';
import { kernelBpfIds } from '../src/ffi/libbpf.js';
import { gettid } from '../src/ffi/libc.js';
import {
  KT_F_NO_ENTER,
  KT_F_RUN,
  KT_FD_CLOSE,
  KT_FD_OPEN,
  KT_FD_SYSTEM,
  KT_FD_VCPU,
  KT_FD_VM,
  KT_RUN_SNAP,
} from '../src/bpf/event-layout.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';
import { kvmRunLayout } from '../src/kvm/kvm-run.js';
import { probeFeature } from '../src/bpf/features.js';
import { Kvm } from '../src/kvm/system.js';
import { Btf } from '../src/btf/index.js';
import { KvmTracer, type BpfIds } from '../src/bpf/tracer.js';
import {
  bpfSkipReason,
  GUEST_BYTE,
  GUEST_PORT,
  headerDefine,
  RingCollector,
  runPioGuest,
  type Drained,
  type GuestRun,
} from './bpf-support.js';

const skip = bpfSkipReason();
if (skip) console.log(`bpf-tracer tests skipped: ${skip}`);

const cmd = (name: string): number => ioctlByName(name).cmd;
const KVM_EXIT_IO = 2;
const KVM_EXIT_HLT = 5;

/** Our ids still in the kernel's lists, after waiting out deferred frees (maps go after an RCU grace period). */
async function remaining(ids: BpfIds): Promise<ReturnType<typeof inKernel>> {
  let left = inKernel(ids);
  for (let i = 0; i < 50 && left.progs.length + left.maps.length + left.links.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    left = inKernel(ids);
  }
  return left;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

function inKernel(ids: BpfIds): { progs: number[]; maps: number[]; links: number[] } {
  const p = new Set(kernelBpfIds('prog'));
  const m = new Set(kernelBpfIds('map'));
  const l = new Set(kernelBpfIds('link'));
  return { progs: ids.progs.filter((i) => p.has(i)), maps: ids.maps.filter((i) => m.has(i)), links: ids.links.filter((i) => l.has(i)) };
}

/** Attach with `opts`, run the guest, drain, close; the records of this process only. */
function traceGuest(opts: Parameters<typeof KvmTracer.open>[0]): { got: Drained; guest: GuestRun; tracer: KvmTracer } {
  const tracer = KvmTracer.open(opts);
  const ring = new RingCollector(tracer.ringMapFd);
  try {
    const guest = runPioGuest();
    const all = ring.drain();
    const mine = (r: { pid: number }): boolean => r.pid === process.pid;
    return {
      got: { ioctls: all.ioctls.filter(mine), fds: all.fds.filter(mine), mmaps: all.mmaps.filter(mine), other: all.other },
      guest,
      tracer,
    };
  } finally {
    ring.free();
  }
}

describe.skipIf(skip !== undefined)('KvmTracer, tracepoint strategy, real KVM guest', () => {
  let got: Drained;
  let guest: GuestRun;
  let tracer: KvmTracer;
  let ids: BpfIds;
  let fdsBefore: number;
  const tid = gettid();
  const logs: string[] = [];

  beforeAll(() => {
    fdsBefore = openFds();
    // Filtered to this process: other processes' KVM work on a shared machine must not fill the ring.
    ({ got, guest, tracer } = traceGuest({ strategy: 'tracepoint', pids: [process.pid], log: (l) => logs.push(l) }));
    ids = tracer.ids();
  });
  afterAll(() => tracer?.close());

  it('attaches the tracepoint programs and says which strategy it uses', () => {
    expect(tracer.strategy).toBe('tracepoint');
    expect(tracer.programs).toEqual([
      'kt_ioctl_enter',
      'kt_ioctl_exit',
      'kt_openat_exit',
      'kt_open_exit',
      'kt_mmap_exit',
      'kt_close_exit',
      'kt_process_exit',
      'kt_dup_exit',
      'kt_dup2_exit',
      'kt_dup3_exit',
      'kt_fcntl_exit',
      'kt_close_range_exit',
      'kt_execve_exit',
      'kt_execveat_exit',
      'kt_openat2_exit',
      'kt_process_fork',
    ]);
    expect(logs.some((l) => l.startsWith('strategy tracepoint'))).toBe(true);
    expect(tracer.ringBytes).toBe(8 << 20);
    expect(tracer.ringMapFd).toBeGreaterThan(2);
  });

  it('the guest ran: one IO exit, then HLT', () => {
    expect(guest.exits).toEqual([KVM_EXIT_IO, KVM_EXIT_HLT]);
  });

  it('sees /dev/kvm opened, with its fd, kind and thread', () => {
    const open = got.fds.filter((f) => f.op === KT_FD_OPEN);
    expect(open).toHaveLength(1);
    expect(open[0]).toMatchObject({ fd: guest.kvmFd, kind: KT_FD_SYSTEM, ret: guest.kvmFd, tid });
  });

  it('records every KVM ioctl once, in order, with cmd, fd, ret and tid', () => {
    const seq = got.ioctls.map((e) => [e.cmd, e.fd, e.ret]);
    expect(seq).toEqual([
      [cmd('KVM_GET_API_VERSION'), guest.kvmFd, 12],
      [cmd('KVM_GET_VCPU_MMAP_SIZE'), guest.kvmFd, guest.kvmRunSize],
      [cmd('KVM_CREATE_VM'), guest.kvmFd, guest.vmFd],
      [cmd('KVM_SET_USER_MEMORY_REGION'), guest.vmFd, 0],
      [cmd('KVM_CREATE_VCPU'), guest.vmFd, guest.vcpuFd],
      [cmd('KVM_GET_SREGS'), guest.vcpuFd, 0],
      [cmd('KVM_SET_SREGS'), guest.vcpuFd, 0],
      [cmd('KVM_GET_REGS'), guest.vcpuFd, 0],
      [cmd('KVM_SET_REGS'), guest.vcpuFd, 0],
      [cmd('KVM_RUN'), guest.vcpuFd, 0],
      [cmd('KVM_RUN'), guest.vcpuFd, 0],
    ]);
    for (const e of got.ioctls) {
      expect(e.tid).toBe(tid);
      expect(e.flags & KT_F_NO_ENTER).toBe(0);
      expect(e.enter_ns).toBeGreaterThan(0);
      expect(e.ts_ns).toBeGreaterThanOrEqual(e.enter_ns);
    }
  });

  it('learns fd kinds from /dev/kvm and the creating ioctls', () => {
    const kindOf = (name: string): number[] => got.ioctls.filter((e) => e.cmd === cmd(name)).map((e) => e.fd_kind);
    expect(kindOf('KVM_CREATE_VM')).toEqual([KT_FD_SYSTEM]);
    expect(kindOf('KVM_CREATE_VCPU')).toEqual([KT_FD_VM]);
    expect(kindOf('KVM_GET_REGS')).toEqual([KT_FD_VCPU]);
  });

  it('reads write-direction arguments at enter and read-direction ones at exit, sized by the cmd', () => {
    const region = got.ioctls.find((e) => e.cmd === cmd('KVM_SET_USER_MEMORY_REGION'))!;
    expect(region.in_len).toBe(ioctlByName('KVM_SET_USER_MEMORY_REGION').size);
    expect(region.out_len).toBe(0);
    // The guest's RAM is 64 KiB at GPA 0: memory_size is somewhere in the captured bytes.
    const inView = new DataView(region.in.buffer, region.in.byteOffset, region.in.byteLength);
    const u64s = Array.from({ length: region.in_len / 8 }, (_, i) => inView.getBigUint64(i * 8, true));
    expect(u64s).toContain(0x10000n);
    const sregs = got.ioctls.find((e) => e.cmd === cmd('KVM_GET_SREGS'))!;
    expect(sregs.in_len).toBe(0);
    expect(sregs.out_len).toBe(ioctlByName('KVM_GET_SREGS').size);
    const setSregs = got.ioctls.find((e) => e.cmd === cmd('KVM_SET_SREGS'))!;
    expect(setSregs.in_len).toBe(ioctlByName('KVM_SET_SREGS').size);
  });

  it('folds kvm_run into each KVM_RUN record: kernel address, vcpu id, exit reason, snapshot, PIO data', () => {
    const runs = got.ioctls.filter((e) => e.cmd === cmd('KVM_RUN'));
    expect(runs.map((e) => e.exit_reason)).toEqual([KVM_EXIT_IO, KVM_EXIT_HLT]);
    const layout = kvmRunLayout();
    for (const e of runs) {
      expect(e.flags & KT_F_RUN).toBe(KT_F_RUN);
      expect(e.fd_kind).toBe(KT_FD_VCPU);
      expect(e.vcpu_id).toBe(0);
      expect(BigInt(e.run_kaddr) % 4096n).toBe(0n);
      // The kernel half: from 0xffff800000000000 with 4-level paging, from 0xff00000000000000 with 5-level
      // (a Debian kernel under QEMU -cpu max puts its direct map at 0xff11…).
      expect(BigInt(e.run_kaddr)).toBeGreaterThanOrEqual(0xff00000000000000n);
      // IO and HLT details fit the short snapshot (header + start of the exit union).
      expect(e.out_len).toBe(headerDefine('KT_RUN_SNAP_SHORT'));
      expect(e.out_len).toBeLessThan(KT_RUN_SNAP);
      const snap = new DataView(e.out.buffer, e.out.byteOffset, e.out.byteLength);
      expect(snap.getUint32(layout.exitReason, true)).toBe(e.exit_reason);
    }
    expect(runs[0].run_kaddr).toBe(runs[1].run_kaddr);
    const io = new DataView(runs[0].out.buffer, runs[0].out.byteOffset, runs[0].out.byteLength);
    expect(io.getUint16(layout.io.port, true)).toBe(GUEST_PORT);
    expect(io.getUint8(layout.io.size)).toBe(1);
    expect(Number(runs[0].pio & 0xffn)).toBe(GUEST_BYTE);
  });

  it("reports the vCPU's kvm_run mmap: fd, kind, user address and length", () => {
    expect(got.mmaps).toHaveLength(1);
    expect(got.mmaps[0]).toMatchObject({ fd: guest.vcpuFd, kind: KT_FD_VCPU, len: guest.kvmRunSize, pgoff: 0, tid });
    expect(BigInt(got.mmaps[0].addr)).toBe(guest.kvmRunUserAddr);
  });

  it('reports the close of every tracked fd with its kind', () => {
    const closes = got.fds.filter((f) => f.op === KT_FD_CLOSE).map((f) => [f.fd, f.kind, f.ret]);
    expect(closes).toEqual([
      [guest.vcpuFd, KT_FD_VCPU, 0],
      [guest.vmFd, KT_FD_VM, 0],
      [guest.kvmFd, KT_FD_SYSTEM, 0],
    ]);
  });

  it('counts records and losses in the kernel', () => {
    const s = tracer.stats();
    expect(s.lost).toBe(0);
    expect(s.stateUnavailable).toBe(0);
    expect(s.events).toBeGreaterThanOrEqual(got.ioctls.length + got.fds.length + got.mmaps.length);
  });

  it('lists its kernel objects, and none remains after close (nor any fd)', async () => {
    expect(ids.progs).toHaveLength(16);
    expect(ids.links).toHaveLength(16);
    expect(ids.maps.length).toBeGreaterThanOrEqual(8);
    expect(inKernel(ids)).toEqual(ids);
    const before = tracer.stats();
    tracer.close();
    tracer.close(); // idempotent
    expect(tracer.closed).toBe(true);
    expect(tracer.stats()).toEqual(before); // final counters survive close (nothing ran meanwhile)
    expect(openFds()).toBe(fdsBefore);
    expect(await remaining(ids)).toEqual({ progs: [], maps: [], links: [] });
  });
});

describe.skipIf(skip !== undefined)('KVM_RUN snapshot sizes', () => {
  it('exits whose details need more than the short snapshot (DEBUG) carry the full one', () => {
    const tracer = KvmTracer.open({ strategy: 'tracepoint', pids: [process.pid] });
    const ring = new RingCollector(tracer.ringMapFd);
    try {
      const guest = runPioGuest({ singleStep: true });
      expect(guest.exits).toEqual([4 /* KVM_EXIT_DEBUG */, KVM_EXIT_IO, KVM_EXIT_HLT]);
      const runs = ring.drain().ioctls.filter((e) => e.cmd === cmd('KVM_RUN'));
      expect(runs.map((e) => [e.exit_reason, e.out_len])).toEqual([
        [4, KT_RUN_SNAP],
        [KVM_EXIT_IO, headerDefine('KT_RUN_SNAP_SHORT')],
        [KVM_EXIT_HLT, headerDefine('KT_RUN_SNAP_SHORT')],
      ]);
      // The full snapshot holds the debug exit's details: kvm_run.debug.arch.pc (offsets from the kernel's
      // BTF) is past the first instruction, `mov dx, 0x10` (3 bytes).
      const btf = Btf.vmlinux();
      const exitUnion = btf.struct('kvm_run')!.members.find((m) => m.name === '' && m.nested?.members.some((n) => n.name === 'debug'))!;
      const debug = exitUnion.nested!.members.find((m) => m.name === 'debug')!;
      const pcOff = btf.struct('kvm_debug_exit_arch')!.members.find((m) => m.name === 'pc')!.offset;
      const at = exitUnion.offset + debug.offset + debug.nested!.members.find((m) => m.name === 'arch')!.offset + pcOff;
      const snap = new DataView(runs[0].out.buffer, runs[0].out.byteOffset, runs[0].out.byteLength);
      expect(snap.getBigUint64(at, true)).toBe(0x1003n);
    } finally {
      ring.free();
      tracer.close();
    }
  });
});

describe.skipIf(skip !== undefined)('filters', () => {
  const comm = readFileSync('/proc/self/comm', 'utf8').trim();

  it('a pid filter for another process sees nothing of ours', () => {
    const { got, tracer } = traceGuest({ strategy: 'tracepoint', pids: [1] });
    tracer.close();
    expect(got.ioctls).toHaveLength(0);
    expect(got.fds).toHaveLength(0);
    expect(got.mmaps).toHaveLength(0);
  });

  it('a pid filter naming us (with others, through the pids map) sees our ioctls', () => {
    const { got, tracer } = traceGuest({ strategy: 'tracepoint', pids: [1, process.pid] });
    tracer.close();
    expect(got.ioctls.length).toBe(11);
  });

  it('a single pid filter naming us sees our ioctls', () => {
    const { got, tracer } = traceGuest({ strategy: 'tracepoint', pids: [process.pid] });
    tracer.close();
    expect(got.ioctls.length).toBe(11);
  });

  it('the process-name filter matches our name and nothing else', () => {
    const ours = traceGuest({ strategy: 'tracepoint', comm });
    ours.tracer.close();
    expect(ours.got.ioctls.length).toBe(11);
    const other = traceGuest({ strategy: 'tracepoint', comm: `${comm.slice(0, 10)}-not` });
    other.tracer.close();
    expect(other.got.ioctls).toHaveLength(0);
  });
});

describe.skipIf(skip !== undefined)('strategy choice and bad options', () => {
  it('auto picks the richest strategy the probes allow and says why', () => {
    const t = KvmTracer.open({});
    try {
      const fentry = probeFeature('fentry').status;
      const kprobe = probeFeature('kprobe').status;
      const expected = fentry === 'available' ? 'fentry' : kprobe === 'available' ? 'kprobe' : 'tracepoint';
      expect(t.strategy).toBe(expected);
      expect(t.reason).toMatch(/^auto: /);
      if (expected === 'tracepoint') expect(t.reason).toMatch(/fentry (unsupported|inconclusive).*kprobe (unsupported|inconclusive)/);
    } finally {
      t.close();
    }
  });

  it.each(['kprobe', 'fentry'] as const)('an explicit %s strategy that cannot work is one clear NotSupportedError', (s) => {
    if (probeFeature(s).status !== 'unsupported') {
      console.log(`${s} is not unsupported here (${probeFeature(s).detail}): nothing to refuse`);
      return;
    }
    const fds = openFds();
    expect(() => KvmTracer.open({ strategy: s })).toThrow(NotSupportedError);
    try {
      KvmTracer.open({ strategy: s });
    } catch (err) {
      expect((err as Error).message).toMatch(new RegExp(`^strategy ${s} is not available here: `));
      expect((err as Error).message).not.toContain('\n');
    }
    expect(openFds()).toBe(fds);
  });

  it.each([
    [{ ringBytes: 1000 }, /power of two/],
    [{ ringBytes: 3 * 4096 }, /power of two/],
    [{ pids: [0] }, /invalid pid 0/],
    [{ ringBytes: 65536, wakeupBytes: 65536 }, /wakeup threshold/],
    [{ comm: '' }, /empty/],
    [{ strategy: 'bogus' as never }, /unknown strategy "bogus"/],
  ])('rejects %o with one line', (opts, msg) => {
    expect(() => KvmTracer.open(opts)).toThrow(msg);
  });

  it('a failure after load (a program that cannot attach) tears everything down', () => {
    if (probeFeature('kprobe').status !== 'unsupported') return;
    // Every program, map and link is held by an fd of this process (nothing is pinned): the same fd
    // count after the failure means the loaded object and the attached kt_ioctl_enter link are gone.
    const fds = openFds();
    expect(() => KvmTracer.open({ strategy: 'tracepoint', programs: ['kt_ioctl_enter', 'kt_copy_from_user_kprobe'] })).toThrow(
      /attaching kt_copy_from_user_kprobe failed/,
    );
    expect(openFds()).toBe(fds);
  });
});

describe.skipIf(skip !== undefined)('consumer wakeups', () => {
  it('submits without waking the consumer, and forces one wakeup when the ring crosses the threshold', () => {
    // 64 KiB ring, wake at 16 KiB. Each KVM_GET_API_VERSION record is offsetof(data) + 8 bytes of ring header.
    const tracer = KvmTracer.open({ strategy: 'tracepoint', pids: [process.pid], ringBytes: 64 << 10, wakeupBytes: 16 << 10 });
    const ring = new RingCollector(tracer.ringMapFd);
    const kvm = Kvm.open();
    try {
      for (let i = 0; i < 20; i++) kvm.apiVersion(); // ~2.2 KiB: below the threshold
      expect(ring.poll(100)).toBe(0); // no wakeup although records are waiting
      expect(ring.drain().ioctls.length).toBe(20);
      for (let i = 0; i < 200; i++) kvm.apiVersion(); // ~22 KiB: crosses 16 KiB once
      expect(ring.poll(2000)).toBeGreaterThan(0);
      expect(tracer.stats().lost).toBe(0);
    } finally {
      kvm.close();
      ring.free();
      tracer.close();
    }
  });

  it('counts records lost to a full ring', () => {
    const tracer = KvmTracer.open({ strategy: 'tracepoint', pids: [process.pid], ringBytes: 4096, wakeupBytes: 0 });
    const kvm = Kvm.open();
    try {
      for (let i = 0; i < 100; i++) kvm.apiVersion(); // 100 × 112 bytes into a 4 KiB ring, never drained
      const s = tracer.stats();
      expect(s.events + s.lost).toBe(100 + 1); // + the open of /dev/kvm
      expect(s.lost).toBeGreaterThan(50);
    } finally {
      kvm.close();
      tracer.close();
    }
  });
});
