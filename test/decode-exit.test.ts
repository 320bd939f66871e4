// KVM_RUN exits decoded from the kvm_run snapshot in the record (offsets from the kernel's BTF). Snapshots
// are built with the C layout DSL's struct kvm_run (uapi order, C rules), independent of BTF.
import { describe, expect, it } from 'vitest';
import { KT_FD_VCPU, KT_F_RUN, KT_RUN_SNAP } from '../src/bpf/event-layout.js';
import { array, memberAt, struct, u32, u64, union } from '../src/cdata/layout.js';
import { STRUCTS } from '../src/kvm/abi/structs.js';
import { Harness, cmdOf, put } from './decode-helpers.js';

const RUN = STRUCTS.kvm_run;
const EXIT_UNION = memberAt(RUN, '').offset;
// Exit-union members the DSL's kvm_run does not declare, in uapi order.
const system_event = struct('', [['type', u32], ['ndata', u32], ['', union('', [['flags', u64], ['data', array(u64, 16)]])]]);

function snapshot(value: Record<string, unknown>, extra?: (b: Uint8Array) => void): Uint8Array {
  const b = new Uint8Array(KT_RUN_SNAP);
  put(b, RUN, value as never, 0);
  extra?.(b);
  return b;
}

const KVM_RUN = cmdOf('KVM_RUN');

interface Case {
  what: string;
  code: number;
  snap: Uint8Array;
  pio?: number[];
  want: Record<string, unknown>;
}

const CASES: Case[] = [
  {
    what: 'IO out, one byte',
    code: 2,
    snap: snapshot({ exit_reason: 2, '': { io: { direction: 1, size: 1, port: 0x3f8, count: 1, data_offset: 4096n } } }),
    pio: [0x48],
    want: { reason: 'IO', code: 2, direction: 'out', size: 1, port: 0x3f8, count: 1, data_offset: 4096, data: 0x48 },
  },
  {
    what: 'IO out, rep outsw (count 3)',
    code: 2,
    snap: snapshot({ exit_reason: 2, '': { io: { direction: 1, size: 2, port: 0x1f0, count: 3, data_offset: 4096n } } }),
    pio: [0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48],
    want: { reason: 'IO', code: 2, direction: 'out', size: 2, port: 0x1f0, count: 3, data_offset: 4096, data: '414243444546' },
  },
  {
    what: 'IO in (the VMM fills the data after the exit: none shown)',
    code: 2,
    snap: snapshot({ exit_reason: 2, '': { io: { direction: 0, size: 4, port: 0xcfc, count: 1, data_offset: 4096n } } }),
    pio: [1, 2, 3, 4],
    want: { reason: 'IO', code: 2, direction: 'in', size: 4, port: 0xcfc, count: 1, data_offset: 4096 },
  },
  {
    what: 'MMIO write',
    code: 6,
    snap: snapshot({ exit_reason: 6, '': { mmio: { phys_addr: 0xfee000b0n, data: new Uint8Array([0xb0, 0, 0, 0]), len: 4, is_write: 1 } } }),
    want: { reason: 'MMIO', code: 6, phys_addr: '0xfee000b0', len: 4, is_write: true, data: 0xb0 },
  },
  {
    what: 'MMIO read, 8 bytes high address',
    code: 6,
    snap: snapshot({ exit_reason: 6, '': { mmio: { phys_addr: 0xfd0000001000n, len: 8, is_write: 0 } } }),
    want: { reason: 'MMIO', code: 6, phys_addr: '0xfd0000001000', len: 8, is_write: false },
  },
  {
    what: 'MMIO write of 8 bytes (beyond 6 bytes: hex)',
    code: 6,
    snap: snapshot({ exit_reason: 6, '': { mmio: { phys_addr: 0x1000n, data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 0x80]), len: 8, is_write: 1 } } }),
    want: { reason: 'MMIO', code: 6, phys_addr: '0x1000', len: 8, is_write: true, data: '0x8007060504030201' },
  },
  { what: 'HLT', code: 5, snap: snapshot({ exit_reason: 5 }), want: { reason: 'HLT', code: 5 } },
  { what: 'SHUTDOWN', code: 8, snap: snapshot({ exit_reason: 8 }), want: { reason: 'SHUTDOWN', code: 8 } },
  { what: 'IRQ_WINDOW_OPEN', code: 7, snap: snapshot({ exit_reason: 7 }), want: { reason: 'IRQ_WINDOW_OPEN', code: 7 } },
  {
    what: 'FAIL_ENTRY',
    code: 9,
    snap: snapshot({ exit_reason: 9, '': { fail_entry: { hardware_entry_failure_reason: 0x80000021n, cpu: 1 } } }),
    want: { reason: 'FAIL_ENTRY', code: 9, hardware_entry_failure_reason: 0x80000021, cpu: 1 },
  },
  {
    what: 'INTERNAL_ERROR (emulation), only ndata words',
    code: 17,
    snap: snapshot({ exit_reason: 17, '': { internal: { suberror: 1, ndata: 2, data: [0x1234n, 0x5678n, 0x9999n] } } }),
    want: { reason: 'INTERNAL_ERROR', code: 17, suberror: 1, suberror_name: 'EMULATION', ndata: 2, data: [0x1234, 0x5678] },
  },
  {
    what: 'SYSTEM_EVENT reset',
    code: 24,
    snap: snapshot({ exit_reason: 24 }, (b) => put(b, system_event, { type: 2, ndata: 1, '': { data: [5n] } }, EXIT_UNION)),
    // uapi's union { flags; data[16] } is data[16] only in a kernel build (flags is #ifndef __KERNEL__)
    want: { reason: 'SYSTEM_EVENT', code: 24, type: 2, type_name: 'RESET', ndata: 1, data: [5] },
  },
  {
    what: 'EXCEPTION',
    code: 1,
    snap: snapshot({ exit_reason: 1, '': { ex: { exception: 6, error_code: 0 } } }),
    want: { reason: 'EXCEPTION', code: 1, exception: 6, error_code: 0 },
  },
  {
    what: 'UNKNOWN (hardware exit reason)',
    code: 0,
    snap: snapshot({ exit_reason: 0, '': { hw: { hardware_exit_reason: 0x31n } } }),
    want: { reason: 'UNKNOWN', code: 0, hardware_exit_reason: 0x31 },
  },
  { what: 'a code no header names', code: 99, snap: snapshot({ exit_reason: 99 }), want: { reason: 'UNKNOWN_99', code: 99 } },
];

describe('KVM_RUN exit decoding', () => {
  it.each(CASES)('$what', ({ code, snap, pio, want }) => {
    const h = new Harness();
    const r = h.ioctl({
      cmd: KVM_RUN,
      fd_kind: KT_FD_VCPU,
      flags: KT_F_RUN,
      vcpu_id: 2,
      exit_reason: code,
      run_kaddr: 0xffff888004a1c000n,
      pio_data: pio ? new Uint8Array(pio) : undefined,
      out: snap,
    });
    expect(r.name).toBe('KVM_RUN');
    expect(r.vcpu).toBe(2);
    expect(r.exit).toEqual(want);
    expect(r.args).toBeUndefined();
  });

  it('lean mode keeps only reason and code', () => {
    const h = new Harness({ lean: true });
    const r = h.ioctl({ cmd: KVM_RUN, fd_kind: KT_FD_VCPU, flags: KT_F_RUN, vcpu_id: 0, exit_reason: 2, out: CASES[0].snap, pio_data: new Uint8Array([1]) });
    expect(r.exit).toEqual({ reason: 'IO', code: 2 });
  });

  it('a snapshot cut inside the exit member decodes what is there and says so', () => {
    const h = new Harness();
    const r = h.ioctl({ cmd: KVM_RUN, fd_kind: KT_FD_VCPU, flags: KT_F_RUN, vcpu_id: 0, exit_reason: 2, out: CASES[0].snap.subarray(0, EXIT_UNION + 8) });
    expect(r.exit).toEqual({ reason: 'IO', code: 2, direction: 1, size: 1, port: 0x3f8, count: 1, _truncated: true });
  });

  it('no kvm_run snapshot at all (KT_F_RUN unset): no exit info', () => {
    const h = new Harness();
    const r = h.ioctl({ cmd: KVM_RUN, fd_kind: KT_FD_VCPU, vcpu_id: -1, ret: -4 });
    expect(r.exit).toBeUndefined();
    expect(r.errno).toBe('EINTR');
  });
});
