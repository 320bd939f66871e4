// End to end on the real kernel: kvm-trace's BPF programs (KvmTracer) attached to this process, the ring
// drained by RingBufferConsumer, every record decoded by the Decoder while a real-mode guest runs
// `out 0x10, 0x42; hlt`. The decoded JSONL records must say exactly what the guest did.
import { describe, expect, it } from 'vitest';
import { Decoder } from '../src/decode/decoder.js';
import type { FdRecord, IoctlRecord, KvmRunRecord, TraceRecord } from '../src/decode/records.js';
import { SummaryBuilder } from '../src/decode/summary.js';
import { RingBufferConsumer } from '../src/ringbuf/consumer.js';
import { KvmTracer } from '../src/bpf/tracer.js';
import { HDR } from '../src/bpf/event-layout.js';
import { GUEST_BYTE, GUEST_PORT, bpfSkipReason, runPioGuest } from './bpf-support.js';

const skip = bpfSkipReason();
if (skip) console.log(`decode-capture skipped: ${skip}`);

describe.skipIf(skip !== undefined)('decoding a real capture', () => {
  it('a real guest run decodes to the calls, fds, exit and kvm_run addresses it made', () => {
    const out: TraceRecord[] = [];
    const decoder = new Decoder({ emit: (r) => out.push(r) });
    const tracer = KvmTracer.open({ pids: [process.pid] });
    let ring: RingBufferConsumer | undefined;
    let guest: ReturnType<typeof runPioGuest>;
    let lost = -1;
    try {
      ring = new RingBufferConsumer(tracer.ringMapFd, tracer.ringBytes, {
        onRecord: (v, o, l) => decoder.decode(v, o, l),
        minRecordLen: HDR.size,
        intervalMs: 0,
        poll: false,
      });
      guest = runPioGuest();
      ring.flush();
      lost = tracer.stats().lost;
    } finally {
      ring?.close();
      tracer.close();
    }
    decoder.finish();
    expect(decoder.stats.rejected).toBe(0);
    expect(decoder.stats.unknownIoctls).toBe(0);

    const mine = out.filter((r) => !('pid' in r) || r.pid === process.pid);
    const ioctls = mine.filter((r): r is IoctlRecord => r.type === 'ioctl');
    const names = ioctls.map((r) => r.name);
    expect(names).toEqual(expect.arrayContaining(['KVM_GET_API_VERSION', 'KVM_CREATE_VM', 'KVM_SET_USER_MEMORY_REGION', 'KVM_CREATE_VCPU', 'KVM_RUN']));

    const createVm = ioctls.find((r) => r.name === 'KVM_CREATE_VM')!;
    expect(createVm).toMatchObject({ fd: guest.kvmFd, fd_kind: 'system', ret: guest.vmFd, errno: null, args: { type: 0 } });
    const mem = ioctls.find((r) => r.name === 'KVM_SET_USER_MEMORY_REGION')!;
    expect(mem).toMatchObject({ fd: guest.vmFd, fd_kind: 'vm', vm: 0, args: { slot: 0, flags: 0, guest_phys_addr: '0x0', memory_size: 0x10000 } });
    const createVcpu = ioctls.find((r) => r.name === 'KVM_CREATE_VCPU')!;
    expect(createVcpu).toMatchObject({ fd: guest.vmFd, ret: guest.vcpuFd, args: { id: 0 } });

    const runs = ioctls.filter((r) => r.name === 'KVM_RUN');
    expect(runs.map((r) => r.exit?.reason)).toEqual(guest.exits.map((c) => (c === 2 ? 'IO' : c === 5 ? 'HLT' : String(c))));
    expect(runs[0]).toMatchObject({
      fd: guest.vcpuFd,
      fd_kind: 'vcpu',
      vm: 0,
      vcpu: 0,
      exit: { reason: 'IO', direction: 'out', port: GUEST_PORT, size: 1, count: 1, data: GUEST_BYTE },
    });
    for (const r of ioctls) expect(r.latency_ns).toBeGreaterThan(0);

    const kvmRun = mine.filter((r): r is KvmRunRecord => r.type === 'kvm_run');
    expect(kvmRun).toEqual([
      {
        type: 'kvm_run',
        pid: process.pid,
        vcpu: 0,
        fd: guest.vcpuFd,
        kernel_addr: expect.stringMatching(/^0xffff[0-9a-f]{12}$/),
        user_addr: `0x${guest.kvmRunUserAddr.toString(16)}`,
        mmap_size: guest.kvmRunSize,
      },
    ]);

    const fds = mine.filter((r): r is FdRecord => r.type === 'fd');
    const opened = fds.filter((r) => r.op === 'open').map((r) => [r.fd, r.fd_kind]);
    expect(opened).toEqual([
      [guest.kvmFd, 'system'],
      [guest.vmFd, 'vm'],
      [guest.vcpuFd, 'vcpu'],
    ]);
    expect(fds.filter((r) => r.op === 'close').map((r) => r.fd).sort()).toEqual([guest.kvmFd, guest.vmFd, guest.vcpuFd].sort());

    const s = new SummaryBuilder();
    for (const r of mine) s.write(r);
    const sum = s.build({ strategy: 'tracepoint', lost, duration_s: 0 });
    expect(sum.exits[`${process.pid}/0`]).toEqual({ IO: 1, HLT: 1 });
    expect(sum.fds).toEqual({ opened: 3, closed: 3, leaked: 0 });
    expect(sum.lost).toBe(0);
  });
});
