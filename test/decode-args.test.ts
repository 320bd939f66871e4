// `args` of KVM ioctls decoded generically from the running kernel's BTF. The bytes are built with the C
// layout DSL (uapi member order, offsets by C rules — independent of BTF), and, in the second half, taken
// from REAL KVM ioctls on this machine and compared with the DSL's own decoding of the same bytes.
import { describe, expect, it } from 'vitest';
import { KT_FD_SYSTEM, KT_FD_VCPU, KT_FD_VM, KT_F_OUT_TRUNC } from '../src/bpf/event-layout.js';
import { array, decode, s32, struct, u16, u32, u64, u8, union } from '../src/cdata/layout.js';
import { STRUCTS } from '../src/kvm/abi/structs.js';
import { Harness, bytesOf, cmdOf, put } from './decode-helpers.js';

const S = STRUCTS;
// uapi structs the DSL table does not declare, declared here the same way (linux/kvm.h order).
const kvm_pic_state = struct('kvm_pic_state', [
  ...['last_irr', 'irr', 'imr', 'isr', 'priority_add', 'irq_base', 'read_reg_select', 'poll', 'special_mask', 'init_state', 'auto_eoi', 'rotate_on_auto_eoi', 'special_fully_nested_mode', 'init4', 'elcr', 'elcr_mask'].map((n): [string, typeof u8] => [n, u8]),
]);
const kvm_irqchip = struct('kvm_irqchip', [
  ['chip_id', u32],
  ['pad', u32],
  ['chip', union('', [['dummy', array(u8, 512)], ['pic', kvm_pic_state]])],
]);
const kvm_signal_mask = struct('kvm_signal_mask', [['len', u32]]);
const kvm_dirty_log = struct('kvm_dirty_log', [['slot', u32], ['padding1', u32], ['dirty_bitmap', u64]]);
const kvm_ioeventfd = struct('kvm_ioeventfd', [['datamatch', u64], ['addr', u64], ['len', u32], ['fd', s32], ['flags', u32], ['pad', array(u8, 36)]]);
const kvm_irqfd = struct('kvm_irqfd', [['fd', u32], ['gsi', u32], ['flags', u32], ['resamplefd', u32], ['pad', array(u8, 16)]]);
const kvm_msi = struct('kvm_msi', [['address_lo', u32], ['address_hi', u32], ['data', u32], ['flags', u32], ['devid', u32], ['pad', array(u8, 12)]]);
const kvm_irq_routing = struct('kvm_irq_routing', [['nr', u32], ['flags', u32]]);
const kvm_irq_routing_entry = struct('kvm_irq_routing_entry', [
  ['gsi', u32],
  ['type', u32],
  ['flags', u32],
  ['pad', u32],
  ['u', union('', [['msi', kvm_msi_routing()], ['pad', array(u32, 8)]])],
]);
function kvm_msi_routing() {
  return struct('kvm_irq_routing_msi', [['address_lo', u32], ['address_hi', u32], ['data', u32], ['devid', u32]]);
}
const kvm_create_device = struct('kvm_create_device', [['type', u32], ['fd', u32], ['flags', u32]]);
const kvm_coalesced_mmio_zone = struct('kvm_coalesced_mmio_zone', [['addr', u64], ['size', u32], ['pad', u32]]);
const kvm_translation = struct('kvm_translation', [['linear_address', u64], ['physical_address', u64], ['valid', u8], ['writeable', u8], ['usermode', u8], ['pad', array(u8, 5)]]);

interface Case {
  name: string;
  kind: number;
  in?: Uint8Array;
  out?: Uint8Array;
  ret?: number;
  arg?: bigint;
  flags?: number;
  want: Record<string, unknown> | undefined;
  wantIn?: Record<string, unknown>;
}

const msrs = (): Uint8Array => {
  const b = bytesOf(S.kvm_msrs, { nmsrs: 2 }, 3 * 16);
  put(b, S.kvm_msr_entry, { index: 0x10, data: 123456789n }, 8);
  put(b, S.kvm_msr_entry, { index: 0xc0000080, data: 0xd01n }, 24);
  put(b, S.kvm_msr_entry, { index: 0xdead, data: 7n }, 40); // beyond nmsrs: must not show
  return b;
};

const cpuid = (nent: number, entries: number): Uint8Array => {
  const b = bytesOf(S.kvm_cpuid2, { nent }, entries * S.kvm_cpuid_entry2.size);
  for (let i = 0; i < entries; i++) {
    put(b, S.kvm_cpuid_entry2, { function: i, index: 0, flags: 0, eax: 0x10 + i, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 }, 8 + i * S.kvm_cpuid_entry2.size);
  }
  return b;
};

const CASES: Case[] = [
  {
    name: 'KVM_SET_USER_MEMORY_REGION',
    kind: KT_FD_VM,
    in: bytesOf(S.kvm_userspace_memory_region, { slot: 1, flags: 2, guest_phys_addr: 0x100000n, memory_size: 0x200000n, userspace_addr: 0x7f1234560000n }),
    want: { slot: 1, flags: 2, guest_phys_addr: '0x100000', memory_size: 0x200000, userspace_addr: '0x7f1234560000' },
  },
  {
    name: 'KVM_GET_REGS',
    kind: KT_FD_VCPU,
    out: bytesOf(S.kvm_regs, { rax: 0xffffffffffffffffn, rbx: 2n, rip: 0x1000n, rflags: 2n, rsp: 0x8000n }),
    want: { rax: '0xffffffffffffffff', rbx: 2, rcx: 0, rdx: 0, rsi: 0, rdi: 0, rsp: 0x8000, rbp: 0, r8: 0, r9: 0, r10: 0, r11: 0, r12: 0, r13: 0, r14: 0, r15: 0, rip: 0x1000, rflags: 2 },
  },
  {
    name: 'KVM_SET_REGS',
    kind: KT_FD_VCPU,
    in: bytesOf(S.kvm_regs, { rip: 0xfff0n, rflags: 0x202n, rdx: 0x600n }),
    want: { rax: 0, rbx: 0, rcx: 0, rdx: 0x600, rsi: 0, rdi: 0, rsp: 0, rbp: 0, r8: 0, r9: 0, r10: 0, r11: 0, r12: 0, r13: 0, r14: 0, r15: 0, rip: 0xfff0, rflags: 0x202 },
  },
  {
    name: 'KVM_GET_MSRS',
    kind: KT_FD_VCPU,
    in: msrs(),
    out: msrs(),
    ret: 2,
    want: { nmsrs: 2, entries: [{ index: 0x10, data: 123456789 }, { index: 0xc0000080, data: 0xd01 }] },
  },
  {
    name: 'KVM_SET_MSRS',
    kind: KT_FD_VCPU,
    in: msrs(),
    ret: 2,
    want: { nmsrs: 2, entries: [{ index: 0x10, data: 123456789 }, { index: 0xc0000080, data: 0xd01 }] },
  },
  {
    name: 'KVM_GET_MSR_INDEX_LIST',
    kind: KT_FD_SYSTEM,
    in: bytesOf(S.kvm_msr_list, { nmsrs: 64 }, 0),
    out: (() => {
      const b = bytesOf(S.kvm_msr_list, { nmsrs: 3 }, 12);
      new DataView(b.buffer).setUint32(4, 0x174, true);
      new DataView(b.buffer).setUint32(8, 0x175, true);
      new DataView(b.buffer).setUint32(12, 0xc0000080, true);
      return b;
    })(),
    want: { nmsrs: 3, indices: [0x174, 0x175, 0xc0000080] },
    wantIn: { nmsrs: 64 },
  },
  {
    name: 'KVM_SET_CPUID2',
    kind: KT_FD_VCPU,
    in: cpuid(2, 2),
    want: {
      nent: 2,
      entries: [
        { function: 0, index: 0, flags: 0, eax: 0x10, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 },
        { function: 1, index: 0, flags: 0, eax: 0x11, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 },
      ],
    },
  },
  {
    name: 'KVM_GET_SUPPORTED_CPUID',
    kind: KT_FD_SYSTEM,
    in: cpuid(100, 0),
    out: cpuid(1, 1),
    want: { nent: 1, entries: [{ function: 0, index: 0, flags: 0, eax: 0x10, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 }] },
    wantIn: { nent: 100 },
  },
  {
    name: 'KVM_GET_SREGS',
    kind: KT_FD_VCPU,
    out: bytesOf(S.kvm_sregs, {
      cs: { base: 0xffff0000n, limit: 0xffff, selector: 0xf000, type: 11, present: 1, s: 1 },
      gdt: { base: 0x500n, limit: 0x27 },
      cr0: 0x60000010n,
      efer: 0x500n,
      apic_base: 0xfee00900n,
      interrupt_bitmap: [0n, 1n << 63n, 0n, 0n],
    }),
    want: expect.objectContaining({
      cs: { base: '0xffff0000', limit: 0xffff, selector: 0xf000, type: 11, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0, unusable: 0 },
      gdt: { base: '0x500', limit: 0x27 },
      cr0: 0x60000010,
      efer: 0x500,
      apic_base: '0xfee00900',
      interrupt_bitmap: ['0x0', '0x8000000000000000', '0x0', '0x0'],
    }),
  },
  {
    name: 'KVM_SET_SREGS',
    kind: KT_FD_VCPU,
    in: bytesOf(S.kvm_sregs, { ds: { selector: 0x10, limit: 0xfffff, g: 1, db: 1, present: 1, type: 3, s: 1 }, cr3: 0x1000n }),
    want: expect.objectContaining({
      ds: { base: '0x0', limit: 0xfffff, selector: 0x10, type: 3, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 },
      cr3: 0x1000,
    }),
  },
  {
    name: 'KVM_GET_FPU',
    kind: KT_FD_VCPU,
    out: bytesOf(S.kvm_fpu, { fcw: 0x37f, mxcsr: 0x1f80, last_ip: 0x401000n, xmm: [new Uint8Array([1, 2, 3])] }),
    want: {
      fpr: '00'.repeat(128),
      fcw: 0x37f,
      fsw: 0,
      ftwx: 0,
      last_opcode: 0,
      last_ip: 0x401000,
      last_dp: 0,
      xmm: '010203' + '00'.repeat(253),
      mxcsr: 0x1f80,
    },
  },
  {
    name: 'KVM_IRQ_LINE',
    kind: KT_FD_VM,
    in: bytesOf(S.kvm_irq_level, { '': { irq: 4 }, level: 1 }),
    want: { irq: 4, status: 4, level: 1 },
  },
  {
    name: 'KVM_IRQ_LINE_STATUS',
    kind: KT_FD_VM,
    in: bytesOf(S.kvm_irq_level, { '': { irq: 9 }, level: 0 }),
    out: bytesOf(S.kvm_irq_level, { '': { status: -1 }, level: 0 }),
    want: { irq: 0xffffffff, status: -1, level: 0 },
    wantIn: { irq: 9, status: 9 },
  },
  {
    name: 'KVM_GET_IRQCHIP',
    kind: KT_FD_VM,
    in: bytesOf(kvm_irqchip, { chip_id: 0 }).subarray(0, 512),
    out: bytesOf(kvm_irqchip, { chip_id: 0, chip: { pic: { irr: 1, imr: 0xfb, irq_base: 8, elcr_mask: 0xf8 } } }).subarray(0, 512),
    flags: KT_F_OUT_TRUNC,
    want: {
      chip_id: 0,
      chip: { pic: { last_irr: 0, irr: 1, imr: 0xfb, isr: 0, priority_add: 0, irq_base: 8, read_reg_select: 0, poll: 0, special_mask: 0, init_state: 0, auto_eoi: 0, rotate_on_auto_eoi: 0, special_fully_nested_mode: 0, init4: 0, elcr: 0, elcr_mask: 0xf8 } },
      _truncated: true,
    },
  },
  {
    name: 'KVM_GET_LAPIC',
    kind: KT_FD_VCPU,
    out: (() => {
      const b = new Uint8Array(512); // KT_DATA_MAX of the 1024-byte kvm_lapic_state
      b[0x20 + 3] = 0x01; // APIC ID register byte 3
      return b;
    })(),
    flags: KT_F_OUT_TRUNC,
    want: { regs: '00'.repeat(0x23) + '01' + '00'.repeat(512 - 0x24), _truncated: true },
  },
  {
    name: 'KVM_GET_VCPU_EVENTS',
    kind: KT_FD_VCPU,
    out: bytesOf(S.kvm_vcpu_events, { exception: { injected: 1, nr: 14, has_error_code: 1, error_code: 2 }, nmi: { masked: 1 }, flags: 0x4, exception_payload: 0x1000n }),
    want: {
      exception: { injected: 1, nr: 14, has_error_code: 1, pending: 0, error_code: 2 },
      interrupt: { injected: 0, nr: 0, soft: 0, shadow: 0 },
      nmi: { injected: 0, pending: 0, masked: 1 },
      sipi_vector: 0,
      flags: 4,
      smi: { smm: 0, pending: 0, smm_inside_nmi: 0, latched_init: 0 },
      triple_fault: { pending: 0 },
      exception_has_payload: 0,
      exception_payload: 0x1000,
    },
  },
  {
    name: 'KVM_GET_DEBUGREGS',
    kind: KT_FD_VCPU,
    out: bytesOf(S.kvm_debugregs, { db: [0x1000n, 0n, 0n, 0n], dr6: 0xffff0ff0n, dr7: 0x400n }),
    want: { db: [0x1000, 0, 0, 0], dr6: 0xffff0ff0, dr7: 0x400, flags: 0 },
  },
  {
    name: 'KVM_SET_XCRS',
    kind: KT_FD_VCPU,
    in: bytesOf(S.kvm_xcrs, { nr_xcrs: 1, xcrs: [{ xcr: 0, value: 7n }, { xcr: 9, value: 9n }] }),
    want: { nr_xcrs: 1, flags: 0, xcrs: [{ xcr: 0, value: 7 }] },
  },
  {
    name: 'KVM_SET_GUEST_DEBUG',
    kind: KT_FD_VCPU,
    in: bytesOf(S.kvm_guest_debug, { control: 0x10003, arch: { debugreg: [0x1000n, 0n, 0n, 0n, 0n, 0n, 0n, 0x401n] } }),
    want: { control: 0x10003, arch: { debugreg: [0x1000, 0, 0, 0, 0, 0, 0, 0x401] } },
  },
  {
    name: 'KVM_SET_SIGNAL_MASK',
    kind: KT_FD_VCPU,
    in: (() => {
      const b = bytesOf(kvm_signal_mask, { len: 8 }, 8);
      b[4] = 0x00;
      b[5] = 0x40; // SIGUSR1..: bit 14
      return b;
    })(),
    want: { len: 8, sigset: [0, 0x40, 0, 0, 0, 0, 0, 0] },
  },
  {
    name: 'KVM_GET_DIRTY_LOG',
    kind: KT_FD_VM,
    in: bytesOf(kvm_dirty_log, { slot: 3, dirty_bitmap: 0x7ffc00001000n }),
    want: { slot: 3, dirty_bitmap: '0x7ffc00001000' },
  },
  {
    name: 'KVM_IOEVENTFD',
    kind: KT_FD_VM,
    in: bytesOf(kvm_ioeventfd, { datamatch: 0n, addr: 0xfe003000n, len: 4, fd: 17, flags: 0 }),
    want: { datamatch: 0, addr: '0xfe003000', len: 4, fd: 17, flags: 0 },
  },
  {
    name: 'KVM_IRQFD',
    kind: KT_FD_VM,
    in: bytesOf(kvm_irqfd, { fd: 21, gsi: 5, flags: 0, resamplefd: 0 }),
    want: { fd: 21, gsi: 5, flags: 0, resamplefd: 0 },
  },
  {
    name: 'KVM_SIGNAL_MSI',
    kind: KT_FD_VM,
    in: bytesOf(kvm_msi, { address_lo: 0xfee00000, address_hi: 0, data: 0x4041 }),
    ret: 1,
    want: { address_lo: 0xfee00000, address_hi: 0, data: 0x4041, flags: 0, devid: 0 },
  },
  {
    name: 'KVM_SET_GSI_ROUTING',
    kind: KT_FD_VM,
    in: (() => {
      const b = bytesOf(kvm_irq_routing, { nr: 1 }, kvm_irq_routing_entry.size);
      put(b, kvm_irq_routing_entry, { gsi: 24, type: 2, u: { msi: { address_lo: 0xfee00000, data: 0x22 } } }, 8);
      return b;
    })(),
    want: { nr: 1, flags: 0, entries: [{ gsi: 24, type: 2, flags: 0, u: { msi: { address_lo: 0xfee00000, address_hi: 0, data: 0x22, devid: 0 } } }] },
  },
  {
    name: 'KVM_ENABLE_CAP',
    kind: KT_FD_VM,
    in: bytesOf(S.kvm_enable_cap, { cap: 129, flags: 0, args: [3n, 0n, 0n, 0n] }),
    want: { cap: 'KVM_CAP_X2APIC_API', value: 129, flags: 0, args: [3, 0, 0, 0] },
  },
  { name: 'KVM_CHECK_EXTENSION', kind: KT_FD_SYSTEM, arg: 3n, ret: 1, want: { cap: 'KVM_CAP_USER_MEMORY', value: 3 } },
  { name: 'KVM_CREATE_VM', kind: KT_FD_SYSTEM, arg: 0n, ret: 5, want: { type: 0 } },
  { name: 'KVM_CREATE_VCPU', kind: KT_FD_VM, arg: 2n, ret: 6, want: { id: 2 } },
  { name: 'KVM_SET_TSS_ADDR', kind: KT_FD_VM, arg: 0xfffbd000n, want: { addr: '0xfffbd000' } },
  {
    name: 'KVM_SET_IDENTITY_MAP_ADDR',
    kind: KT_FD_VM,
    in: bytesOf(struct('', [['v', u64]]), { v: 0xfeffc000n }),
    want: { addr: '0xfeffc000' },
  },
  {
    name: 'KVM_GET_CLOCK',
    kind: KT_FD_VM,
    out: bytesOf(S.kvm_clock_data, { clock: 123456789012n, flags: 6, realtime: 1_700_000_000_000_000_000n, host_tsc: 0x123456789abcn }),
    want: { clock: 123456789012, flags: 6, realtime: `0x${(1_700_000_000_000_000_000n).toString(16)}`, host_tsc: 0x123456789abc },
  },
  {
    name: 'KVM_CREATE_PIT2',
    kind: KT_FD_VM,
    in: bytesOf(S.kvm_pit_config, { flags: 1, pad: [0, 0, 5] }),
    want: { flags: 1, pad: [0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
  },
  { name: 'KVM_GET_MP_STATE', kind: KT_FD_VCPU, out: bytesOf(S.kvm_mp_state, { mp_state: 3 }), want: { mp_state: 3 } },
  {
    name: 'KVM_CREATE_DEVICE',
    kind: KT_FD_VM,
    in: bytesOf(kvm_create_device, { type: 5, fd: 0, flags: 0 }),
    out: bytesOf(kvm_create_device, { type: 5, fd: 23, flags: 0 }),
    want: { type: 5, fd: 23, flags: 0 },
    wantIn: { fd: 0 },
  },
  {
    name: 'KVM_REGISTER_COALESCED_MMIO',
    kind: KT_FD_VM,
    in: bytesOf(kvm_coalesced_mmio_zone, { addr: 0xd0000n, size: 0x1000 }),
    // the kernel's zone has union { __u32 pad; __u32 pio; }: the padding name yields to pio
    want: { addr: '0xd0000', size: 0x1000, pio: 0 },
  },
  {
    name: 'KVM_TRANSLATE',
    kind: KT_FD_VCPU,
    in: bytesOf(kvm_translation, { linear_address: 0x401000n }),
    out: bytesOf(kvm_translation, { linear_address: 0x401000n, physical_address: 0x1000n, valid: 1, writeable: 1 }),
    want: { linear_address: '0x401000', physical_address: '0x1000', valid: 1, writeable: 1, usermode: 0 },
    wantIn: { physical_address: '0x0', valid: 0, writeable: 0 },
  },
];

describe('ioctl args decoded from BTF', () => {
  const h = new Harness();

  it('covers at least 25 distinct ioctls', () => {
    expect(new Set(CASES.map((c) => c.name)).size).toBeGreaterThanOrEqual(25);
  });

  it.each(CASES)('$name', (c) => {
    const r = h.ioctl({ cmd: cmdOf(c.name), fd_kind: c.kind, in: c.in, out: c.out, ret: c.ret ?? 0, arg: c.arg ?? 0x7ffd0000n, flags: c.flags });
    expect(r.name).toBe(c.name);
    expect(r.args).toEqual(c.want);
    if (c.wantIn) expect(r.args_in).toEqual(c.wantIn);
    else expect(r.args_in).toBeUndefined();
    // The contract: plain JSON, no bigint anywhere.
    expect(JSON.parse(JSON.stringify(r.args ?? {}))).toEqual(r.args ?? {});
  });

  it.each([
    ['captured bytes cut inside a counted flexible array', msrs().subarray(0, 8 + 16 + 4), { nmsrs: 2, entries: [{ index: 0x10, data: 123456789 }], _truncated: true }],
    ['nothing past the header', msrs().subarray(0, 8), { nmsrs: 2, entries: [], _truncated: true }],
    ['a header cut short', msrs().subarray(0, 2), { _truncated: true }],
  ])('truncation: %s', (_what, bytes, want) => {
    const r = h.ioctl({ cmd: cmdOf('KVM_SET_MSRS'), fd_kind: KT_FD_VCPU, in: bytes });
    expect(r.args).toEqual(want);
  });

  it('a failed read-write call decodes what was passed in', () => {
    const r = h.ioctl({ cmd: cmdOf('KVM_GET_SUPPORTED_CPUID'), fd_kind: KT_FD_SYSTEM, in: cpuid(1, 0), out: new Uint8Array(0), ret: -7 });
    expect(r.errno).toBe('E2BIG');
    // nent says one entry follows, but only the 8-byte header was captured
    expect(r.args).toEqual({ nent: 1, entries: [], _truncated: true });
  });

  it('KVM_GET_IRQCHIP of the IOAPIC: the chip_id selects the union member; bitfields decode', () => {
    const b = bytesOf(kvm_irqchip, { chip_id: 2 }).subarray(0, 512);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    dv.setBigUint64(8, 0xfec00000n, true); // ioapic.base_address
    // redirtbl[0] (at 8 + 24): vector 0x30, masked (bit 16), level-triggered (bit 15), dest_id 1 (bits 56..63)
    dv.setBigUint64(8 + 24, 0x30n | (1n << 15n) | (1n << 16n) | (1n << 56n), true);
    const r = new Harness().ioctl({ cmd: cmdOf('KVM_GET_IRQCHIP'), fd_kind: KT_FD_VM, out: new Uint8Array(b), flags: KT_F_OUT_TRUNC });
    const ioapic = (r.args!.chip as Record<string, Record<string, unknown>>).ioapic;
    expect(Object.keys(r.args!.chip as object)).toEqual(['ioapic']);
    expect(ioapic.base_address).toBe('0xfec00000');
    expect((ioapic.redirtbl as unknown[]).length).toBe(24);
    expect((ioapic.redirtbl as unknown[])[0]).toEqual({
      bits: '0x100000000018030', // above 2^53: hex
      fields: { vector: 0x30, delivery_mode: 0, dest_mode: 0, delivery_status: 0, polarity: 0, remote_irr: 0, trig_mode: 1, mask: 1, reserve: 0, dest_id: 1 },
    });
  });

  it('non-zero padding is kept (it is what makes the kernel say EINVAL)', () => {
    const r = h.ioctl({ cmd: cmdOf('KVM_IRQFD'), fd_kind: KT_FD_VM, in: bytesOf(kvm_irqfd, { fd: 1, gsi: 2, pad: [0, 0, 9] }), ret: -22 });
    expect(r.args).toEqual({ fd: 1, gsi: 2, flags: 0, resamplefd: 0, pad: [0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] });
  });

  it('an argument that could not be read is marked', () => {
    const r = h.ioctl({ cmd: cmdOf('KVM_SET_REGS'), fd_kind: KT_FD_VCPU, flags: 1 /* KT_F_IN_FAULT */, ret: -14 });
    expect(r.args).toEqual({ _fault: true });
    expect(r.errno).toBe('EFAULT');
  });
});

// Real kernel bytes: run the GET ioctls on a real vCPU, decode the very bytes through the decoder and compare
// with the C layout DSL's decoding of the same buffer.
import { existsSync } from 'node:fs';
import { ioctlPtr } from '../src/ffi/libc.js';
import { Kvm } from '../src/kvm/system.js';

const haveKvm = existsSync('/dev/kvm') && process.getuid?.() === 0;
if (!haveKvm) console.log('decode-args: real-KVM byte checks skipped — needs root and /dev/kvm');

/** DSL-decoded value in the args contract's number/hex convention (for comparison). */
function norm(v: unknown, key = ''): unknown {
  if (typeof v === 'bigint') {
    if (/addr|base|bitmap/.test(key)) return `0x${v.toString(16)}`;
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `0x${v.toString(16)}`;
  }
  if (v instanceof Uint8Array) return v.length > 16 ? Buffer.from(v).toString('hex') : [...v];
  if (Array.isArray(v)) return v.map((x) => norm(x, key));
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!/^(pad|padding|reserved)\d*$/.test(k) || !isZeroDeep(x)) o[k] = norm(x, k);
    return o;
  }
  return v;
}
const isZeroDeep = (x: unknown): boolean =>
  x === 0 || x === 0n || (x instanceof Uint8Array && x.every((b) => b === 0)) || (Array.isArray(x) && x.every(isZeroDeep));

describe.skipIf(!haveKvm)('args of real KVM ioctls on this machine', () => {
  it.each([
    ['KVM_GET_REGS', 'kvm_regs'],
    ['KVM_GET_SREGS', 'kvm_sregs'],
    ['KVM_GET_VCPU_EVENTS', 'kvm_vcpu_events'],
    ['KVM_GET_DEBUGREGS', 'kvm_debugregs'],
    ['KVM_GET_MP_STATE', 'kvm_mp_state'],
    ['KVM_GET_FPU', 'kvm_fpu'],
  ])('%s: decoder(real bytes) equals the DSL decoding', (name, tag) => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const vcpu = vm.createVcpu(0);
    try {
      const buf = Buffer.alloc(S[tag].size);
      ioctlPtr(vcpu.fd, cmdOf(name), buf, name);
      const dsl = norm(decode(S[tag], new DataView(buf.buffer, buf.byteOffset, buf.byteLength))) as Record<string, unknown>;
      // kvm_fpu's fpr/xmm are 2-D in the DSL but one flat __u8[128]/[256] in the kernel's BTF.
      if (tag === 'kvm_fpu') for (const k of ['fpr', 'xmm']) dsl[k] = Buffer.from(buf.subarray(S.kvm_fpu.members.find((m) => m.name === k)!.offset, S.kvm_fpu.members.find((m) => m.name === k)!.offset + (k === 'fpr' ? 128 : 256))).toString('hex');
      const r = new Harness().ioctl({ cmd: cmdOf(name), fd: vcpu.fd, fd_kind: KT_FD_VCPU, out: new Uint8Array(buf) });
      expect(r.args).toEqual(dsl);
    } finally {
      vcpu.close();
      vm.close();
      kvm.close();
    }
  });

  it('KVM_GET_SUPPORTED_CPUID: real entries decode, count honoured', () => {
    const kvm = Kvm.open();
    try {
      const n = 12;
      const buf = Buffer.alloc(S.kvm_cpuid2.size + n * S.kvm_cpuid_entry2.size);
      buf.writeUInt32LE(n, 0);
      // Fewer slots than the kernel has entries fails with E2BIG, so ask for plenty and keep what fits.
      const big = Buffer.alloc(S.kvm_cpuid2.size + 256 * S.kvm_cpuid_entry2.size);
      big.writeUInt32LE(256, 0);
      ioctlPtr(kvm.fd, cmdOf('KVM_GET_SUPPORTED_CPUID'), big, 'KVM_GET_SUPPORTED_CPUID');
      const nent = big.readUInt32LE(0);
      const out = new Uint8Array(big.subarray(0, 512)); // what KT_DATA_MAX captures
      const r = new Harness().ioctl({ cmd: cmdOf('KVM_GET_SUPPORTED_CPUID'), fd: kvm.fd, fd_kind: KT_FD_SYSTEM, in: new Uint8Array(buf.subarray(0, 8)), out, flags: KT_F_OUT_TRUNC });
      const fit = Math.floor((512 - 8) / S.kvm_cpuid_entry2.size);
      const entries = r.args!.entries as Array<Record<string, number>>;
      expect(r.args!.nent).toBe(nent);
      expect(entries.length).toBe(Math.min(nent, fit));
      const leaf0 = decode(S.kvm_cpuid_entry2, new DataView(big.buffer, big.byteOffset + 8, 40)) as Record<string, number>;
      expect(entries[0]).toMatchObject({ function: leaf0.function, eax: leaf0.eax, ebx: leaf0.ebx, ecx: leaf0.ecx, edx: leaf0.edx });
      expect(r.args!._truncated).toBe(true);
      expect(r.args_in).toEqual({ nent: n });
    } finally {
      kvm.close();
    }
  });
});
