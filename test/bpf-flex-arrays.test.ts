// Flexible-array arguments (kvm_msrs.entries[], kvm_cpuid2.entries[], kvm_msr_list.indices[], …): the count
// rule shared by the decoder and the BPF loader, the flex_arrays map built from the kernel's BTF and the
// copy rules, and real captures — KVM_SET_MSRS / KVM_GET_MSRS / KVM_SET_CPUID2 / KVM_GET_SUPPORTED_CPUID /
// KVM_GET_MSR_INDEX_LIST / KVM_SET_GSI_ROUTING / KVM_SET_SIGNAL_MASK issued on /dev/kvm while this process is
// traced — whose decoded entries must equal what was passed to or returned by the kernel.
import { accessSync, constants } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Btf } from '../src/btf/index.js';
import { countFor, flexibleArrayOf } from '../src/kvm/abi/flex-count.js';
import { flexArrayRules } from '../src/bpf/flex-arrays.js';
import { KvmTracer } from '../src/bpf/tracer.js';
import { Decoder } from '../src/decode/decoder.js';
import type { IoctlRecord, TraceRecord } from '../src/decode/records.js';
import { HDR, KT_EV_IOCTL, KT_F_IN_FAULT, KT_F_IN_TRUNC, KT_F_OUT_TRUNC } from '../src/bpf/event-layout.js';
import { parseIoctl, recordType } from './helpers/kt-records.js';
import { RingBufferConsumer } from '../src/ringbuf/consumer.js';
import { Kvm } from '../src/kvm/system.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';
import { findMember } from '../src/btf/layout.js';
import { ioctlRaw, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, memoryView, mmap, munmap, PAGE_SIZE, PROT_NONE, PROT_READ, PROT_WRITE } from '../src/ffi/libc.js';
import { bpfSkipReason, headerDefine } from './bpf-support.js';

const haveBtf = (() => {
  try {
    accessSync('/sys/kernel/btf/vmlinux', constants.R_OK);
    return true;
  } catch {
    return false;
  }
})();
if (!haveBtf) console.log('flex-array BTF tests skipped: no /sys/kernel/btf/vmlinux');
const skip = bpfSkipReason();
if (skip) console.log(`flex-array capture tests skipped: ${skip}`);

const DATA_MAX = headerDefine('KT_DATA_MAX');

describe('countFor: which member counts an array', () => {
  const c = (...names: string[]) => new Map(names.map((n) => [n, n]));
  it.each([
    ['entries', true, c('nent', 'padding'), 'nent'],
    ['entries', true, c('nmsrs', 'pad'), 'nmsrs'],
    ['events', true, c('action', 'nevents', 'flags'), 'nevents'],
    ['sigset', true, c('len'), 'len'],
    ['xcrs', false, c('nr_xcrs', 'flags'), 'nr_xcrs'],
    ['xcrs', false, c('nent'), undefined], // fixed arrays take only nr_/n/num_<name>
    ['entries', true, c('flags'), undefined],
    ['entries', true, c('nr', 'nent'), 'nent'], // FLEX_COUNT_NAMES order
  ])('%s (flexible %s) → %s', (name, flexible, counts, want) => {
    expect(countFor(name, flexible, counts)).toBe(want);
  });
});

describe.skipIf(!haveBtf)('flexible arrays from the kernel BTF', () => {
  const btf = haveBtf ? Btf.vmlinux() : undefined;

  it.each([
    ['kvm_msrs', 'entries', 'nmsrs'],
    ['kvm_cpuid2', 'entries', 'nent'],
    ['kvm_cpuid', 'entries', 'nent'],
    ['kvm_msr_list', 'indices', 'nmsrs'],
    ['kvm_irq_routing', 'entries', 'nr'],
    ['kvm_signal_mask', 'sigset', 'len'],
    ['kvm_pmu_event_filter', 'events', 'nevents'],
  ])('%s: %s counted by %s', (struct, array, count) => {
    const s = btf!.struct(struct)!;
    const fa = flexibleArrayOf(s)!;
    expect(fa).toMatchObject({ name: array, count: { name: count } });
    expect(fa.offset).toBe(findMember(s, array)!.offset);
    expect(fa.count.offset).toBe(findMember(s, count)!.offset);
    expect(fa.count.size).toBe(findMember(s, count)!.member.size);
    expect(fa.elemSize).toBe(findMember(s, array)!.member.elemSize);
  });

  it.each([
    ['kvm_regs'], // no flexible array
    ['kvm_xsave'], // extra[] has no count
    ['kvm_reg_list'], // its count n is a __u64: the decoder does not honour it either
  ])('%s has no counted flexible array', (struct) => {
    expect(flexibleArrayOf(btf!.struct(struct)!)).toBeUndefined();
  });

  it.each([
    ['KVM_GET_MSRS', true, true],
    ['KVM_SET_MSRS', true, false],
    ['KVM_SET_CPUID2', true, false],
    ['KVM_SET_CPUID', true, false],
    ['KVM_GET_CPUID2', false, true],
    ['KVM_GET_SUPPORTED_CPUID', false, true],
    ['KVM_GET_MSR_INDEX_LIST', false, true],
    ['KVM_SET_GSI_ROUTING', true, false],
    ['KVM_SET_SIGNAL_MASK', true, false],
    ['KVM_SET_PMU_EVENT_FILTER', true, false],
  ])('%s: entries read at enter %s, at exit %s (what the handler copies)', (name, enter, exit) => {
    const rule = flexArrayRules(btf!).find((r) => r.name === name);
    expect(rule).toMatchObject({ cmd: ioctlByName(name).cmd, enter, exit });
  });

  it('KVM_RUN and fixed-size arguments are not in the map', () => {
    const names = flexArrayRules(btf!).map((r) => r.name);
    for (const n of ['KVM_RUN', 'KVM_GET_REGS', 'KVM_SET_REGS', 'KVM_GET_XSAVE', 'KVM_SET_XSAVE', 'KVM_CREATE_VCPU']) expect(names).not.toContain(n);
  });
});

interface Raw {
  cmd: number;
  flags: number;
  in_len: number;
  out_len: number;
}

/** Trace this process while `fn` issues ioctls; the decoded ioctl records and the raw record headers, in order. */
function captureWhile(fn: () => void): { ioctls: IoctlRecord[]; raw: Raw[]; flexArrays: string[] } {
  const out: TraceRecord[] = [];
  const raw: Raw[] = [];
  const decoder = new Decoder({ emit: (r) => out.push(r) });
  const tracer = KvmTracer.open({ pids: [process.pid] });
  let ring: RingBufferConsumer | undefined;
  try {
    ring = new RingBufferConsumer(tracer.ringMapFd, tracer.ringBytes, {
      onRecord: (v, o, l) => {
        if (recordType(v, o, l) === KT_EV_IOCTL) {
          const e = parseIoctl(v, o, l);
          if (e) raw.push({ cmd: e.cmd, flags: e.flags, in_len: e.in_len, out_len: e.out_len });
        }
        decoder.decode(v, o, l);
      },
      minRecordLen: HDR.size,
      intervalMs: 0,
      poll: false,
    });
    fn();
    ring.flush();
    expect(tracer.stats().lost).toBe(0);
  } finally {
    ring?.close();
    tracer.close();
  }
  decoder.finish();
  expect(decoder.stats.rejected).toBe(0);
  const ioctls = out.filter((r): r is IoctlRecord => r.type === 'ioctl' && r.pid === process.pid);
  return { ioctls, raw, flexArrays: tracer.flexArrays };
}

const one = (rs: IoctlRecord[], name: string): IoctlRecord => {
  const hits = rs.filter((r) => r.name === name);
  expect(hits.map((r) => r.name)).toEqual([name]);
  return hits[0];
};

/** How many whole elements of `struct`'s flexible array fit in KT_DATA_MAX bytes. */
const fitting = (btf: Btf, struct: string): number => {
  const fa = flexibleArrayOf(btf.struct(struct)!)!;
  return Math.floor((DATA_MAX - fa.offset) / fa.elemSize);
};

// MSRs every x86 KVM accepts (they are in KVM_GET_MSR_INDEX_LIST here), with values the guest could hold.
const MSRS = [
  { index: 0x174, data: 0x10n }, // IA32_SYSENTER_CS
  { index: 0x175, data: 0x12345000n }, // IA32_SYSENTER_ESP
  { index: 0x176, data: 0x80001000n }, // IA32_SYSENTER_EIP
  { index: 0xc0000082, data: 0xffffffff81000000n }, // LSTAR: above 2^53, decoded as "0x…"
];
const decodedData = (v: bigint): number | string => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `0x${v.toString(16)}`);

describe.skipIf(skip !== undefined)('capturing flexible-array entries (real KVM)', () => {
  it('the tracer fills the map: the ioctls with entries are listed, KVM_RUN is not', () => {
    const { flexArrays } = captureWhile(() => {});
    expect(flexArrays).toEqual(expect.arrayContaining(['KVM_SET_MSRS', 'KVM_GET_MSRS', 'KVM_SET_CPUID2', 'KVM_GET_SUPPORTED_CPUID', 'KVM_GET_MSR_INDEX_LIST']));
    expect(flexArrays).not.toContain('KVM_RUN');
  });

  it('KVM_SET_MSRS / KVM_GET_MSRS: the entries written and read back, index and data', () => {
    let set = -1;
    let got: { index: number; data: bigint }[] = [];
    const { ioctls } = captureWhile(() => {
      const kvm = Kvm.open();
      const vm = kvm.createVm();
      const vcpu = vm.createVcpu(0);
      try {
        set = vcpu.setMsrs(MSRS);
        got = vcpu.getMsrs(MSRS.map((m) => m.index));
      } finally {
        vcpu.close();
        vm.close();
        kvm.close();
      }
    });
    expect(set).toBe(MSRS.length);
    expect(got.map((e) => [e.index, e.data])).toEqual(MSRS.map((m) => [m.index, m.data]));

    const s = one(ioctls, 'KVM_SET_MSRS');
    expect(s.ret).toBe(MSRS.length);
    expect(s.args).toEqual({ nmsrs: MSRS.length, entries: MSRS.map((m) => ({ index: m.index, data: decodedData(m.data) })) });

    // GET: indices in at enter, values back at exit; args are what the kernel wrote.
    const g = one(ioctls, 'KVM_GET_MSRS');
    expect(g.ret).toBe(MSRS.length);
    expect(g.args).toEqual({ nmsrs: MSRS.length, entries: MSRS.map((m) => ({ index: m.index, data: decodedData(m.data) })) });
  });

  it('KVM_SET_MSRS with more entries than KT_DATA_MAX holds: the ones that fit, flagged truncated', () => {
    const btf = Btf.vmlinux();
    const fit = fitting(btf, 'kvm_msrs');
    const many = Array.from({ length: fit + 5 }, (_, i) => ({ index: 0x174, data: BigInt(i) }));
    const { ioctls, raw } = captureWhile(() => {
      const kvm = Kvm.open();
      const vm = kvm.createVm();
      const vcpu = vm.createVcpu(0);
      try {
        expect(vcpu.setMsrs(many)).toBe(many.length);
      } finally {
        vcpu.close();
        vm.close();
        kvm.close();
      }
    });
    const s = one(ioctls, 'KVM_SET_MSRS');
    expect(s.args).toMatchObject({ nmsrs: many.length, _truncated: true });
    expect((s.args!.entries as unknown[]).length).toBe(fit);
    expect(s.args!.entries).toEqual(many.slice(0, fit).map((m) => ({ index: m.index, data: Number(m.data) })));
    const r = raw.find((x) => x.cmd === ioctlByName('KVM_SET_MSRS').cmd)!;
    expect(r.in_len).toBe(DATA_MAX);
    expect(r.flags & KT_F_IN_TRUNC).toBe(KT_F_IN_TRUNC);
  });

  it('KVM_SET_CPUID2: every entry with its function and index', () => {
    let entries: ReturnType<Kvm['getSupportedCpuid']> = [];
    const { ioctls } = captureWhile(() => {
      const kvm = Kvm.open();
      const vm = kvm.createVm();
      const vcpu = vm.createVcpu(0);
      try {
        // A few real leaves, well under KT_DATA_MAX: all of them must be captured.
        entries = kvm.getSupportedCpuid().slice(0, 6);
        vcpu.setCpuid2(entries);
      } finally {
        vcpu.close();
        vm.close();
        kvm.close();
      }
    });
    expect(entries.length).toBe(6);
    const s = one(ioctls, 'KVM_SET_CPUID2');
    expect(s.ret).toBe(0);
    expect(s.args?._truncated).toBeUndefined();
    expect(s.args?.nent).toBe(entries.length);
    const got = s.args!.entries as Array<Record<string, number>>;
    expect(got.map((e) => [e.function, e.index, e.eax, e.ebx, e.ecx, e.edx])).toEqual(
      entries.map((e) => [e.function, e.index, e.eax, e.ebx, e.ecx, e.edx]),
    );
  });

  it('KVM_GET_SUPPORTED_CPUID: the entries the kernel wrote, up to KT_DATA_MAX, and _truncated beyond', () => {
    let truth: ReturnType<Kvm['getSupportedCpuid']> = [];
    const { ioctls, raw } = captureWhile(() => {
      const kvm = Kvm.open();
      try {
        truth = kvm.getSupportedCpuid(256);
      } finally {
        kvm.close();
      }
    });
    const fit = fitting(Btf.vmlinux(), 'kvm_cpuid2');
    const g = one(ioctls, 'KVM_GET_SUPPORTED_CPUID');
    expect(g.ret).toBe(0);
    expect(g.args?.nent).toBe(truth.length); // the kernel's count, not the 256 offered
    expect(g.args_in).toEqual({ nent: 256 });
    const got = g.args!.entries as Array<Record<string, number>>;
    expect(got.length).toBe(Math.min(truth.length, fit));
    expect(got.map((e) => [e.function, e.index, e.eax, e.edx])).toEqual(truth.slice(0, got.length).map((e) => [e.function, e.index, e.eax, e.edx]));
    const r = raw.find((x) => x.cmd === ioctlByName('KVM_GET_SUPPORTED_CPUID').cmd)!;
    // At enter only the header crosses (the kernel does not read the entries in).
    expect(r.in_len).toBe(ioctlByName('KVM_GET_SUPPORTED_CPUID').size);
    if (truth.length > fit) {
      expect(g.args?._truncated).toBe(true);
      expect(r.flags & KT_F_OUT_TRUNC).toBe(KT_F_OUT_TRUNC);
      expect(r.out_len).toBe(DATA_MAX);
    } else {
      expect(g.args?._truncated).toBeUndefined();
    }
    // This host reports more leaves than fit, so the truncated path really ran.
    expect(truth.length).toBeGreaterThan(fit);
  });

  it('KVM_GET_MSR_INDEX_LIST: the indices the kernel listed', () => {
    let truth: number[] = [];
    const { ioctls } = captureWhile(() => {
      const kvm = Kvm.open();
      try {
        truth = kvm.getMsrIndexList(1024);
      } finally {
        kvm.close();
      }
    });
    const fit = fitting(Btf.vmlinux(), 'kvm_msr_list');
    const g = one(ioctls, 'KVM_GET_MSR_INDEX_LIST');
    expect(g.args?.nmsrs).toBe(truth.length);
    expect(g.args?.indices).toEqual(truth.slice(0, fit));
    expect(g.args?._truncated).toBe(truth.length > fit ? true : undefined);
    expect(truth).toContain(0x174);
  });

  it('KVM_SET_GSI_ROUTING and KVM_SET_SIGNAL_MASK: routes and the sigset bytes', () => {
    const btf = Btf.vmlinux();
    const routing = btf.struct('kvm_irq_routing')!;
    const entry = btf.struct('kvm_irq_routing_entry')!;
    const sigmask = btf.struct('kvm_signal_mask')!;
    const routes = [
      { gsi: 3, pin: 3 },
      { gsi: 9, pin: 9 },
    ];
    let rRet = -1;
    let sRet = -1;
    const { ioctls } = captureWhile(() => {
      const kvm = Kvm.open();
      const vm = kvm.createVm();
      try {
        vm.createIrqchip();
        const eOff = findMember(routing, 'entries')!.offset;
        const buf = Buffer.alloc(eOff + routes.length * entry.size);
        buf.writeUInt32LE(routes.length, findMember(routing, 'nr')!.offset);
        routes.forEach((rt, i) => {
          const at = eOff + i * entry.size;
          buf.writeUInt32LE(rt.gsi, at + findMember(entry, 'gsi')!.offset);
          buf.writeUInt32LE(1 /* KVM_IRQ_ROUTING_IRQCHIP */, at + findMember(entry, 'type')!.offset);
          const u = findMember(entry, 'u')!;
          const chip = btf.struct('kvm_irq_routing_irqchip')!;
          buf.writeUInt32LE(2 /* KVM_IRQCHIP_IOAPIC */, at + u.offset + findMember(chip, 'irqchip')!.offset);
          buf.writeUInt32LE(rt.pin, at + u.offset + findMember(chip, 'pin')!.offset);
        });
        rRet = ioctlRaw(vm.fd, ioctlByName('KVM_SET_GSI_ROUTING').cmd, buf);
        const vcpu = vm.createVcpu(0);
        try {
          const sigset = btf.sizeOf(btf.findByName('sigset_t', 'typedef')!.id);
          const m = Buffer.alloc(findMember(sigmask, 'sigset')!.offset + sigset);
          m.writeUInt32LE(sigset, findMember(sigmask, 'len')!.offset);
          m[findMember(sigmask, 'sigset')!.offset] = 0x05; // signals 1 and 3 blocked while in KVM_RUN
          sRet = ioctlRaw(vcpu.fd, ioctlByName('KVM_SET_SIGNAL_MASK').cmd, m);
        } finally {
          vcpu.close();
        }
      } finally {
        vm.close();
        kvm.close();
      }
    });
    expect(rRet).toBe(0);
    expect(sRet).toBe(0);
    const r = one(ioctls, 'KVM_SET_GSI_ROUTING');
    expect(r.args?.nr).toBe(routes.length);
    expect(r.args?.entries).toEqual(routes.map((rt) => expect.objectContaining({ gsi: rt.gsi, type: 1, u: { irqchip: { irqchip: 2, pin: rt.pin } } })));
    const s = one(ioctls, 'KVM_SET_SIGNAL_MASK');
    expect(s.args).toEqual({ len: 8, sigset: [5, 0, 0, 0, 0, 0, 0, 0] });
  });

  it('entries on an unmapped page: the header is kept, the fault flagged, the call fails EFAULT', () => {
    // A readable page followed by an inaccessible one (PROT_NONE, not unmapped: nothing else can land there).
    const area = mmap(0n, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mmap(area + BigInt(PAGE_SIZE), PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    const hdr = Btf.vmlinux().struct('kvm_msrs')!;
    const at = area + BigInt(PAGE_SIZE - hdr.size); // the header ends where the mapping ends
    let ret = 0;
    const { ioctls, raw } = captureWhile(() => {
      const kvm = Kvm.open();
      const vm = kvm.createVm();
      const vcpu = vm.createVcpu(0);
      try {
        new DataView(memoryView(at, hdr.size)).setUint32(findMember(hdr, 'nmsrs')!.offset, 2, true);
        ret = ioctlRaw(vcpu.fd, ioctlByName('KVM_SET_MSRS').cmd, at);
      } finally {
        vcpu.close();
        vm.close();
        kvm.close();
        munmap(area, 2 * PAGE_SIZE);
      }
    });
    expect(ret).toBe(-14); // EFAULT
    const s = one(ioctls, 'KVM_SET_MSRS');
    expect(s.errno).toBe('EFAULT');
    expect(s.args).toEqual({ nmsrs: 2, entries: [], _truncated: true });
    const r = raw.find((x) => x.cmd === ioctlByName('KVM_SET_MSRS').cmd)!;
    expect(r.in_len).toBe(hdr.size);
    expect(r.flags & KT_F_IN_FAULT).toBe(KT_F_IN_FAULT);
  });
});
