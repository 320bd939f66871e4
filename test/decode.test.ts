// The decoder's record flow: names, errno, latency, fd kinds learned from creation ioctls and opens, VM
// index and vCPU id, kvm_run user/kernel address join, close and leak records, rejections, framed streams,
// and /proc seeding against a real /dev/kvm process (this one).
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  KT_COPY_FROM_USER,
  KT_HOOK_COPY_FROM_USER,
  KT_HOOK_COPY_TO_USER,
  KT_HOOK_MEMDUP_USER,
  KT_HOOK_VMEMDUP_USER,
  KT_FD_CLOSE,
  KT_FD_OPEN,
  KT_FD_SYSTEM,
  KT_FD_VCPU,
  KT_F_NO_ENTER,
  KT_F_RUN,
  KT_RUN_SNAP,
} from '../src/bpf/event-layout.js';
import { encodeCopy, encodeExit, encodeFd, encodeIoctl, encodeMmap } from './helpers/kt-records.js';
import { decodeStream } from '../src/decode/stream.js';
import { frameRecords } from '../src/ringbuf/stream.js';
import { classifyFdLink, parseKvmRunMaps } from '../src/decode/processes.js';
import type { FdRecord, IoctlRecord, KvmRunRecord, TraceRecord } from '../src/decode/records.js';
import { Kvm } from '../src/kvm/system.js';
import { Btf } from '../src/btf/index.js';
import { Decoder } from '../src/decode/decoder.js';
import { Harness, bytesOf, cmdOf } from './decode-helpers.js';
import { struct, u32 } from '../src/cdata/layout.js';

const PID = 4242;
const ioctls = (rs: TraceRecord[]): IoctlRecord[] => rs.filter((r): r is IoctlRecord => r.type === 'ioctl');
const fds = (rs: TraceRecord[]): FdRecord[] => rs.filter((r): r is FdRecord => r.type === 'fd');
const runs = (rs: TraceRecord[]): KvmRunRecord[] => rs.filter((r): r is KvmRunRecord => r.type === 'kvm_run');
const kvm_create_device = struct('kvm_create_device', [['type', u32], ['fd', u32], ['flags', u32]]);

/** A VMM's life: open /dev/kvm, two VMs, vCPUs, a device, mmap, runs, close, exit. */
function vmmSession(): Uint8Array[] {
  let t = 1_000_000;
  const ts = () => (t += 1000);
  const io = (init: Parameters<typeof encodeIoctl>[0]) => encodeIoctl({ enter_ns: t, ...init, ts_ns: ts() });
  return [
    encodeFd({ ts_ns: ts(), pid: PID, fd: 3, op: KT_FD_OPEN, kind: KT_FD_SYSTEM, comm: 'vmm' }),
    io({ pid: PID, fd: 3, cmd: cmdOf('KVM_GET_API_VERSION'), ret: 12, comm: 'vmm' }),
    io({ pid: PID, fd: 3, cmd: cmdOf('KVM_CREATE_VM'), ret: 4, comm: 'vmm' }),
    io({ pid: PID, fd: 3, cmd: cmdOf('KVM_CREATE_VM'), ret: 5, comm: 'vmm' }),
    io({ pid: PID, fd: 4, cmd: cmdOf('KVM_CREATE_VCPU'), arg: 0, ret: 6, comm: 'vmm' }),
    io({ pid: PID, fd: 5, cmd: cmdOf('KVM_CREATE_VCPU'), arg: 1, ret: 7, comm: 'vmm' }),
    io({
      pid: PID,
      fd: 4,
      cmd: cmdOf('KVM_CREATE_DEVICE'),
      ret: 0,
      in: bytesOf(kvm_create_device, { type: 5 }),
      out: bytesOf(kvm_create_device, { type: 5, fd: 8 }),
      comm: 'vmm',
    }),
    encodeMmap({ ts_ns: ts(), pid: PID, fd: 6, kind: KT_FD_VCPU, addr: 0x7f0000010000n, len: 12288 }),
    io({ pid: PID, tid: PID + 1, fd: 6, cmd: cmdOf('KVM_RUN'), flags: KT_F_RUN, vcpu_id: 0, exit_reason: 5, run_kaddr: 0xffff888001234000n, out: new Uint8Array(KT_RUN_SNAP), comm: 'vcpu0' }),
    io({ pid: PID, tid: PID + 1, fd: 6, cmd: cmdOf('KVM_RUN'), flags: KT_F_RUN, vcpu_id: 0, exit_reason: 5, run_kaddr: 0xffff888001234000n, out: new Uint8Array(KT_RUN_SNAP), comm: 'vcpu0' }),
    io({ pid: PID, tid: PID + 2, fd: 7, cmd: cmdOf('KVM_RUN'), flags: KT_F_RUN, vcpu_id: 1, exit_reason: 5, run_kaddr: 0xffff888005678000n, out: new Uint8Array(KT_RUN_SNAP), comm: 'vcpu1' }),
    encodeMmap({ ts_ns: ts(), pid: PID, fd: 7, kind: KT_FD_VCPU, addr: 0x7f0000020000n, len: 12288 }),
    io({ pid: PID, fd: 6, cmd: cmdOf('KVM_GET_REGS') + 0x10000 /* wrong size */, ret: -25, comm: 'vmm' }),
    encodeFd({ ts_ns: ts(), pid: PID, fd: 7, op: KT_FD_CLOSE, kind: KT_FD_VCPU, ret: 0 }),
    encodeExit({ ts_ns: ts(), pid: PID, exit_code: 0, comm: 'vmm' }),
  ];
}

describe('decoder record flow', () => {
  const h = new Harness();
  for (const rec of vmmSession()) h.feed(rec);
  h.decoder.finish();
  const out = h.out;

  it('names every ioctl, with errno and latency', () => {
    const names = ioctls(out).map((r) => r.name);
    expect(names).toEqual([
      'KVM_GET_API_VERSION',
      'KVM_CREATE_VM',
      'KVM_CREATE_VM',
      'KVM_CREATE_VCPU',
      'KVM_CREATE_VCPU',
      'KVM_CREATE_DEVICE',
      'KVM_RUN',
      'KVM_RUN',
      'KVM_RUN',
      'KVM_UNKNOWN_0x8091ae81', // KVM_GET_REGS (0x8090ae81) with a struct one size unit too big
    ]);
    const bad = ioctls(out).at(-1)!;
    expect(bad).toMatchObject({ ret: -25, errno: 'ENOTTY', fd_kind: 'vcpu', vcpu: 0, vm: 0, latency_ns: 1000 });
    expect(h.decoder.stats.unknownIoctls).toBe(1);
    expect(ioctls(out)[0]).toMatchObject({ fd_kind: 'system', vm: null, vcpu: null, ret: 12, errno: null, comm: 'vmm', pid: PID, tid: PID });
  });

  it('learns fd kinds, VM indices and vCPU ids from creation ioctls', () => {
    const opens = fds(out).filter((r) => r.op === 'open');
    expect(opens.map((r) => [r.fd, r.fd_kind, r.vm, r.vcpu])).toEqual([
      [3, 'system', null, null],
      [4, 'vm', 0, null],
      [5, 'vm', 1, null],
      [6, 'vcpu', 0, 0],
      [7, 'vcpu', 1, 1],
      [8, 'device', 0, null],
    ]);
    const run1 = ioctls(out).filter((r) => r.name === 'KVM_RUN')[2];
    expect(run1).toMatchObject({ fd: 7, fd_kind: 'vcpu', vm: 1, vcpu: 1, tid: PID + 2, comm: 'vcpu1', exit: { reason: 'HLT', code: 5 } });
  });

  it('joins mmap (user) and KVM_RUN (kernel) into one kvm_run record per vCPU, in either order', () => {
    expect(runs(out)).toEqual([
      { type: 'kvm_run', pid: PID, vcpu: 0, fd: 6, kernel_addr: '0xffff888001234000', user_addr: '0x7f0000010000', mmap_size: 12288 },
      { type: 'kvm_run', pid: PID, vcpu: 1, fd: 7, kernel_addr: '0xffff888005678000', user_addr: '0x7f0000020000', mmap_size: 12288 },
    ]);
  });

  it('close and exit: closed fd once, everything still open reported as leaked', () => {
    expect(fds(out).filter((r) => r.op === 'close').map((r) => [r.fd, r.fd_kind, r.vcpu])).toEqual([[7, 'vcpu', 1]]);
    expect(fds(out).filter((r) => r.op === 'leak').map((r) => [r.fd, r.fd_kind]).sort()).toEqual([
      [3, 'system'],
      [4, 'vm'],
      [5, 'vm'],
      [6, 'vcpu'],
      [8, 'device'],
    ]);
  });

  it('a framed stream decodes to the same records', () => {
    const h2 = new Harness();
    const n = decodeStream(frameRecords(vmmSession()), h2.decoder);
    h2.decoder.finish();
    expect(n).toBe(vmmSession().length);
    expect(h2.out).toEqual(out);
  });
});

describe('decoder edge cases', () => {
  it.each([
    ['shorter than a header', new Uint8Array(10)],
    ['ioctl shorter than its fixed part', encodeIoctl({ ts_ns: 1, pid: 1, fd: 1, cmd: 0xae80 }).subarray(0, 60)],
    ['ioctl shorter than its declared data', encodeIoctl({ ts_ns: 1, pid: 1, fd: 1, cmd: 0xae80, in: new Uint8Array(16) }).subarray(0, 110)],
    ['fd event cut', encodeFd({ ts_ns: 1, pid: 1, fd: 3, op: 1, kind: 1 }).subarray(0, 30)],
    ['mmap event cut', encodeMmap({ ts_ns: 1, pid: 1, fd: 3, kind: 3, addr: 1n, len: 1 }).subarray(0, 40)],
    ['exit event cut', encodeExit({ ts_ns: 1, pid: 1 }).subarray(0, 25)],
    ['copy event cut', encodeCopy({ ts_ns: 1, pid: 1, uaddr: 1n, len: 1, dir: 1, cmd: 1, fd: 1 }).subarray(0, 50)],
  ])('rejects and counts: %s', (_what, raw) => {
    const h = new Harness();
    expect(h.feed(raw)).toEqual([]);
    expect(h.decoder.stats).toMatchObject({ events: 1, rejected: 1 });
  });

  it('an unknown record type is counted, not thrown on', () => {
    const raw = encodeExit({ ts_ns: 1, pid: 1 });
    raw[0] = 77;
    const h = new Harness();
    expect(h.feed(raw)).toEqual([]);
    expect(h.decoder.stats.unknownTypes).toBe(1);
  });

  it('exit without enter: latency unknown, flagged', () => {
    const r = new Harness().ioctl({ cmd: cmdOf('KVM_GET_API_VERSION'), fd_kind: KT_FD_SYSTEM, flags: KT_F_NO_ENTER, enter_ns: 0, ret: 12 });
    expect(r).toMatchObject({ no_enter: true, latency_ns: 0, enter_ns: 0 });
  });

  it("adopts the kernel's fd kind for fds created before tracing (and the vCPU id from KVM_RUN)", () => {
    const h = new Harness();
    const r = h.ioctl({ cmd: cmdOf('KVM_RUN'), fd: 33, fd_kind: KT_FD_VCPU, flags: KT_F_RUN, vcpu_id: 5, exit_reason: 5, out: new Uint8Array(KT_RUN_SNAP) });
    expect(r).toMatchObject({ fd_kind: 'vcpu', vcpu: 5, vm: null });
    const r2 = h.ioctl({ cmd: cmdOf('KVM_GET_REGS'), fd: 33, out: new Uint8Array(144) });
    expect(r2).toMatchObject({ fd_kind: 'vcpu', vcpu: 5 });
  });

  it.each([
    [-4, 10, { reason: 'INTR', code: 10 }],
    [-14, 2, undefined],
    [0, 5, { reason: 'HLT', code: 5 }],
  ])('KVM_RUN returning %d with exit_reason %d: exit %j (a failed run leaves exit_reason stale, except -EINTR)', (ret, code, want) => {
    const r = new Harness().ioctl({ cmd: cmdOf('KVM_RUN'), fd_kind: KT_FD_VCPU, flags: KT_F_RUN, vcpu_id: 0, exit_reason: code, ret, out: new Uint8Array(KT_RUN_SNAP) });
    expect(r.exit).toEqual(want);
  });

  it('KVM_CREATE_DEVICE with KVM_CREATE_DEVICE_TEST creates no fd', () => {
    const h = new Harness();
    const cd = (fd: number, flags: number) => bytesOf(kvm_create_device, { type: 5, fd, flags });
    h.feed(encodeIoctl({ ts_ns: 1, pid: 9, fd: 4, cmd: cmdOf('KVM_CREATE_DEVICE'), in: cd(0, 1), out: cd(0, 1), ret: 0 }));
    expect(fds(h.out)).toEqual([]);
    h.feed(encodeIoctl({ ts_ns: 1, pid: 9, fd: 4, cmd: cmdOf('KVM_CREATE_DEVICE'), in: cd(0, 0), out: cd(11, 0), ret: 0 }));
    expect(fds(h.out).map((r) => [r.op, r.fd, r.fd_kind])).toEqual([['open', 11, 'device']]);
  });

  it.each([
    [0, false],
    [-4, false],
    [-9, true],
  ])('close returning %d: fd still tracked afterwards = %s (only EBADF closes nothing)', (ret, kept) => {
    const h = new Harness();
    h.feed(encodeFd({ ts_ns: 1, pid: 9, fd: 3, op: KT_FD_OPEN, kind: KT_FD_SYSTEM }));
    h.feed(encodeFd({ ts_ns: 2, pid: 9, fd: 3, op: KT_FD_CLOSE, kind: KT_FD_SYSTEM, ret }));
    expect(h.decoder.procs.get(9).fds.has(3)).toBe(kept);
    expect(fds(h.out).at(-1)).toMatchObject({ op: 'close', fd: 3, fd_kind: 'system', ret });
  });

  it('a BTF without KVM types still decodes: names and exit reasons, no args or exit details, one warning', () => {
    // Minimal raw BTF: header, one `int`, string table.
    const strings = Buffer.from('\0int\0');
    const types = Buffer.alloc(16);
    types.writeUInt32LE(1, 0); // name "int"
    types.writeUInt32LE(0x01000000, 4); // kind INT, vlen 0
    types.writeUInt32LE(4, 8); // size
    types.writeUInt32LE(0x01000020, 12); // signed, 32 bits
    const hdr = Buffer.alloc(24);
    hdr.writeUInt16LE(0xeb9f, 0);
    hdr.writeUInt8(1, 2);
    hdr.writeUInt32LE(24, 4);
    hdr.writeUInt32LE(0, 8);
    hdr.writeUInt32LE(types.length, 12);
    hdr.writeUInt32LE(types.length, 16);
    hdr.writeUInt32LE(strings.length, 20);
    const btf = Btf.fromRaw(new Uint8Array(Buffer.concat([hdr, types, strings])));
    const out: TraceRecord[] = [];
    const d = new Decoder({ btf, emit: (r) => out.push(r) });
    expect(d.warnings).toEqual([expect.stringMatching(/^exit details unavailable: .*kvm_run/)]);
    const raw = encodeIoctl({ ts_ns: 2, pid: 1, fd: 6, cmd: cmdOf('KVM_RUN'), fd_kind: KT_FD_VCPU, flags: KT_F_RUN, vcpu_id: 0, exit_reason: 2, out: new Uint8Array(KT_RUN_SNAP) });
    d.decode(new DataView(raw.buffer), 0, raw.length);
    const regs = encodeIoctl({ ts_ns: 2, pid: 1, fd: 6, cmd: cmdOf('KVM_SET_REGS'), in: new Uint8Array(144) });
    d.decode(new DataView(regs.buffer), 0, regs.length);
    expect(ioctls(out).map((r) => [r.name, r.exit, r.args])).toEqual([
      ['KVM_RUN', { reason: 'IO', code: 2 }, undefined],
      ['KVM_SET_REGS', undefined, undefined],
    ]);
  });

  it('copy records carry the ioctl they happened in and the hook that saw them', () => {
    const h = new Harness();
    const [c] = h.feed(encodeCopy({ ts_ns: 9, pid: 1, tid: 2, uaddr: 0x7ffd1001n, len: 144, dir: KT_COPY_FROM_USER, cmd: cmdOf('KVM_SET_REGS'), fd: 5, hook: KT_HOOK_MEMDUP_USER }));
    expect(c).toEqual({ type: 'copy', ts_ns: 9, pid: 1, tid: 2, dir: 'from_user', addr: '0x7ffd1001', len: 144, cmd: '0x4090ae82', name: 'KVM_SET_REGS', fd: 5, hook: 'memdup_user' });
  });

  it.each([
    [KT_HOOK_COPY_FROM_USER, '_copy_from_user'],
    [KT_HOOK_COPY_TO_USER, '_copy_to_user'],
    [KT_HOOK_MEMDUP_USER, 'memdup_user'],
    [KT_HOOK_VMEMDUP_USER, 'vmemdup_user'],
    [99, 'hook_99'],
  ])('copy hook id %i is %s', (hook, name) => {
    const [c] = new Harness().feed(encodeCopy({ ts_ns: 9, pid: 1, tid: 2, uaddr: 0x1000n, len: 8, dir: KT_COPY_FROM_USER, cmd: cmdOf('KVM_SET_MSRS'), fd: 5, hook }));
    expect(c).toMatchObject({ type: 'copy', hook: name });
  });

  it('mmap of a vCPU fd at a non-zero offset or a failed mmap is not the kvm_run mapping', () => {
    const h = new Harness();
    h.feed(encodeMmap({ ts_ns: 1, pid: 1, fd: 6, kind: KT_FD_VCPU, addr: 0x7f0000003000n, len: 4096, pgoff: 4096 }));
    h.feed(encodeMmap({ ts_ns: 1, pid: 1, fd: 6, kind: KT_FD_VCPU, addr: 0xfffffffffffffff3n, len: 12288 }));
    h.ioctl({ pid: 1, cmd: cmdOf('KVM_RUN'), fd: 6, fd_kind: KT_FD_VCPU, flags: KT_F_RUN, vcpu_id: 0, run_kaddr: 0xffff888000001000n, out: new Uint8Array(KT_RUN_SNAP) });
    expect(runs(h.out)).toEqual([]);
    h.decoder.finish(); // only the kernel side is known: emitted at the end
    expect(runs(h.out)).toEqual([{ type: 'kvm_run', pid: 1, vcpu: 0, fd: 6, kernel_addr: '0xffff888000001000', user_addr: null, mmap_size: null }]);
  });
});

describe('/proc seeding', () => {
  it.each([
    ['/dev/kvm', { kind: 'system', vcpu: null }],
    ['anon_inode:kvm-vm', { kind: 'vm', vcpu: null }],
    ['anon_inode:kvm-vcpu:3', { kind: 'vcpu', vcpu: 3 }],
    ['anon_inode:kvm-vfio', { kind: 'device', vcpu: null }],
    ['anon_inode:[kvm-gmem]', undefined],
    ['anon_inode:[eventfd]', undefined],
    ['/dev/null', undefined],
  ])('classifies %s', (link, want) => {
    expect(classifyFdLink(link)).toEqual(want);
  });

  it('parses kvm_run mappings from a maps text', () => {
    const maps = [
      '7f5a1c000000-7f5a1c003000 rw-s 00000000 00:0e 1042                       anon_inode:kvm-vcpu:0',
      '7f5a1c003000-7f5a1c004000 rw-s 00001000 00:0e 1043                       anon_inode:kvm-vcpu:1',
      '7f5a1c010000-7f5a1c013000 rw-s 00000000 00:0e 1043                       anon_inode:kvm-vcpu:1',
      '7f5a1d000000-7f5a1d021000 rw-p 00000000 00:00 0                          [heap]',
    ].join('\n');
    expect(parseKvmRunMaps(maps)).toEqual([
      { vcpu: 0, user_addr: '0x7f5a1c000000', mmap_size: 0x3000 },
      { vcpu: 1, user_addr: '0x7f5a1c010000', mmap_size: 0x3000 },
    ]);
  });

  const haveKvm = existsSync('/dev/kvm') && process.getuid?.() === 0;
  if (!haveKvm) console.log('decode: /proc seeding against /dev/kvm skipped — needs root and /dev/kvm');

  it.skipIf(!haveKvm)('seeds fds and kvm_run mappings of a running process (this one) from /proc', () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const vcpus = [vm.createVcpu(0), vm.createVcpu(1)];
    try {
      const h = new Harness();
      const res = h.decoder.seedProcess(process.pid);
      expect(res).toMatchObject({ pid: process.pid, vms: 1, vcpus: 2, runs: 2 });
      // the whole-system scan finds this process too (and seeding twice changes nothing)
      expect(new Harness().decoder.seedAll((pid) => pid === process.pid)).toEqual([res]);
      // what the decoder now says about ioctls on these fds
      const r = h.ioctl({ pid: process.pid, cmd: cmdOf('KVM_GET_REGS'), fd: vcpus[1].fd, out: new Uint8Array(144) });
      expect(r).toMatchObject({ fd_kind: 'vcpu', vcpu: 1, vm: 0 });
      expect(h.ioctl({ pid: process.pid, cmd: cmdOf('KVM_CHECK_EXTENSION'), fd: kvm.fd, arg: 3, ret: 1 })).toMatchObject({ fd_kind: 'system' });
      expect(h.ioctl({ pid: process.pid, cmd: cmdOf('KVM_CHECK_EXTENSION'), fd: vm.fd, arg: 3, ret: 1 })).toMatchObject({ fd_kind: 'vm', vm: 0 });
      // KVM_RUN supplies the kernel address: the seeded user address joins it
      h.ioctl({ pid: process.pid, cmd: cmdOf('KVM_RUN'), fd: vcpus[0].fd, flags: KT_F_RUN, vcpu_id: 0, exit_reason: 5, run_kaddr: 0xffff888000aaa000n, out: new Uint8Array(KT_RUN_SNAP) });
      expect(runs(h.out)).toEqual([
        {
          type: 'kvm_run',
          pid: process.pid,
          vcpu: 0,
          fd: vcpus[0].fd,
          kernel_addr: '0xffff888000aaa000',
          user_addr: `0x${vcpus[0].kvmRun.userAddr.toString(16)}`,
          mmap_size: vcpus[0].kvmRun.mmapSize,
        },
      ]);
    } finally {
      for (const v of vcpus) v.close();
      vm.close();
      kvm.close();
    }
  });

  it('an unreadable /proc entry throws (no such process)', () => {
    expect(() => new Harness().decoder.seedProcess(0x7ffffff0)).toThrow(/ENOENT/);
  });
});
