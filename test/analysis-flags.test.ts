/**
 * Buffer flags: the cache-line geometry (pure), the kernel copy rules per ioctl against the running
 * kernel's BTF (sizes and offsets come from BTF; the numbers below are this x86_64 kernel's, as test
 * expectations), and the observed-copy join with synthetic CopyRecords.
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import type { CopyRecord, IoctlRecord } from '../src/decode/records.js';
import { bufferGeometry, lineSpan, systemLineSize } from '../src/analysis/cacheline.js';
import { parseAddr } from '../src/cdata/values.js';
import { deriveCopies } from '../src/kvm/abi/copy-rules.js';
import { CopyJoiner, FlagAnalyzer, flagRecord, routinesOf } from '../src/analysis/flags.js';
import { kernelTypeSource, type TypeSource } from '../src/btf/type-source.js';
import { findMember } from '../src/btf/layout.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';

describe('cache-line geometry', () => {
  it.each([
    // addr, len, line, lines, minLines
    [0x1000n, 144, 64, 3, 3],
    [0x1038n, 144, 64, 4, 3],
    [0x1004n, 144, 64, 3, 3],
    [0x103cn, 8, 64, 2, 1],
    [0x1038n, 8, 64, 1, 1],
    [0x1000n, 64, 64, 1, 1],
    [0x1001n, 64, 64, 2, 1],
    [0x1040n, 1, 64, 1, 1],
    [0x1000n, 0, 64, 0, 0],
    [0x1038n, 16, 128, 1, 1],
    [0x1038n, 16, 64, 2, 1],
    [0xffffffffffffffc0n, 64, 64, 1, 1],
  ])('lineSpan(%s, %i, line %i) touches %i lines, needs %i', (addr, len, line, lines, min) => {
    const s = lineSpan(addr, len, line);
    expect([s.lines, s.minLines]).toEqual([lines, min]);
  });

  it.each([
    // addr, len, align, misaligned, cross
    [0x1000n, 144, 8, false, false],
    [0x1004n, 144, 8, true, false],
    [0x1038n, 144, 8, false, true],
    [0x103cn, 144, 8, true, true],
    [0x1002n, 4, 4, true, false],
    [0x103en, 4, 4, true, true],
    [0x1003n, 40, 1, false, false],
    [0x103dn, 8, 1, false, true],
  ])('bufferGeometry(%s, %i, align %i) → misaligned %s, cross %s', (addr, len, align, mis, cross) => {
    const g = bufferGeometry(addr, len, align, 64);
    expect([g.misaligned, g.cacheline_cross]).toEqual([mis, cross]);
  });

  it.each([
    ['0x10', 16n],
    ['0X1f', 31n],
    ['42', 42n],
    [7, 7n],
    ['-1', undefined],
    ['0x', undefined],
    [null, undefined],
    [1.5, undefined],
  ])('parseAddr(%j) = %s', (v, want) => expect(parseAddr(v)).toBe(want));

  it('reads the line size from sysfs, 64 when absent', () => {
    expect(systemLineSize('/nonexistent/coherency_line_size')).toBe(64);
    const n = systemLineSize();
    expect(n > 0 && (n & (n - 1)) === 0).toBe(true);
  });
});

const { types, error } = kernelTypeSource();
const haveBtf = types !== undefined;
if (!haveBtf) console.log(`skipping BTF copy-rule tests: ${error}`);
// A Linux machine with /sys/kernel/btf/vmlinux must run them: a skip cannot hide a regression there.
if (!haveBtf && existsSync('/sys/kernel/btf/vmlinux')) throw new Error(`BTF present but unreadable: ${error}`);

const lookup = (name: string) => ioctlByName(name);

let ts = 1_000_000;
function ioctl(name: string, arg: bigint | number, args: Record<string, unknown> = {}, extra: Partial<IoctlRecord> = {}): IoctlRecord {
  const def = ioctlByName(name);
  ts += 1000;
  return {
    type: 'ioctl', ts_ns: ts, enter_ns: ts - 500, pid: 100, tid: 101, comm: 'vmm', fd: 5, fd_kind: 'vcpu', vm: 0, vcpu: 0,
    cmd: `0x${def.cmd.toString(16)}`, name, size: def.size, dir: def.dir, arg: `0x${arg.toString(16)}`, ret: 0, errno: null,
    latency_ns: 500, args, ...extra,
  };
}

type Row = [string, string, number, bigint, number, number];
const summary = (c: { what: string; dir: string; len: number | null; addr: bigint; align: number }): Row =>
  [c.what, c.dir, c.len ?? -1, c.addr, c.align, 0].slice(0, 5) as unknown as Row;

describe.skipIf(!haveBtf)('kernel copy rules (running kernel BTF)', () => {
  const env = () => ({ types: types!, ioctl: undefined as ReturnType<typeof lookup> | undefined });
  const derive = (r: IoctlRecord, slots?: { slotPages: () => number | undefined }) =>
    deriveCopies(r, { ...env(), ioctl: lookup(r.name), slots }).map(summary);

  it.each<[string, IoctlRecord, Array<[string, string, number, bigint, number]>]>([
    ['SET_REGS: whole struct in', ioctl('KVM_SET_REGS', 0x1000), [['arg', 'from_user', 144, 0x1000n, 8]]],
    ['GET_REGS: whole struct out', ioctl('KVM_GET_REGS', 0x1004), [['arg', 'to_user', 144, 0x1004n, 8]]],
    ['GET_SREGS', ioctl('KVM_GET_SREGS', 0x2000), [['arg', 'to_user', 312, 0x2000n, 8]]],
    ['SET_USER_MEMORY_REGION', ioctl('KVM_SET_USER_MEMORY_REGION', 0x3000, { slot: 0, memory_size: 0x200000 }),
      [['arg', 'from_user', 32, 0x3000n, 8]]],
    ['TRANSLATE: in and out', ioctl('KVM_TRANSLATE', 0x3100), [['arg', 'from_user', 24, 0x3100n, 8], ['arg', 'to_user', 24, 0x3100n, 8]]],
    ['SET_IRQCHIP is _IOR but copied from the user', ioctl('KVM_SET_IRQCHIP', 0x3200), [['arg', 'from_user', 520, 0x3200n, 8]]],
    ['GET_MSRS: header, entries in, entries written back', ioctl('KVM_GET_MSRS', 0x4000, { nmsrs: 3, pad: 0 }), [
      ['arg', 'from_user', 8, 0x4000n, 8],
      ['kvm_msrs.entries', 'from_user', 48, 0x4008n, 8],
      ['kvm_msrs.entries', 'to_user', 48, 0x4008n, 8],
    ]],
    ['SET_MSRS: no writeback', ioctl('KVM_SET_MSRS', 0x4100, { nmsrs: 1 }), [
      ['arg', 'from_user', 8, 0x4100n, 8],
      ['kvm_msrs.entries', 'from_user', 16, 0x4108n, 8],
    ]],
    ['SET_CPUID2: entries of 40 bytes, 4-aligned', ioctl('KVM_SET_CPUID2', 0x5004, { nent: 2 }), [
      ['arg', 'from_user', 8, 0x5004n, 4],
      ['kvm_cpuid2.entries', 'from_user', 80, 0x500cn, 4],
    ]],
    ['GET_SUPPORTED_CPUID: kernel nent out', ioctl('KVM_GET_SUPPORTED_CPUID', 0x6000, { nent: 3 }, { fd_kind: 'system' }), [
      ['arg', 'from_user', 8, 0x6000n, 4],
      ['kvm_cpuid2.entries', 'to_user', 120, 0x6008n, 4],
      ['arg', 'to_user', 8, 0x6000n, 4],
    ]],
    ['GET_MSR_INDEX_LIST', ioctl('KVM_GET_MSR_INDEX_LIST', 0x7000, { nmsrs: 5 }, { fd_kind: 'system' }), [
      ['arg', 'from_user', 4, 0x7000n, 4],
      ['arg', 'to_user', 4, 0x7000n, 4],
      ['kvm_msr_list.indices', 'to_user', 20, 0x7004n, 4],
    ]],
    ['SET_GSI_ROUTING', ioctl('KVM_SET_GSI_ROUTING', 0x8000, { nr: 2, flags: 0 }), [
      ['arg', 'from_user', 8, 0x8000n, 8],
      ['kvm_irq_routing.entries', 'from_user', 96, 0x8008n, 8],
    ]],
    ['SET_SIGNAL_MASK: header then sizeof(sigset_t) bytes of the __u8[] sigset (align 1)', ioctl('KVM_SET_SIGNAL_MASK', 0x9000, { len: 8 }), [
      ['arg', 'from_user', 4, 0x9000n, 4],
      ['kvm_signal_mask.sigset', 'from_user', 8, 0x9004n, 1],
    ]],
    ['SET_SIGNAL_MASK(NULL): nothing copied', ioctl('KVM_SET_SIGNAL_MASK', 0), []],
    ['GET_ONE_REG: u64 value out', ioctl('KVM_GET_ONE_REG', 0xa000, { id: '0x2030000000000001', addr: '0xb008' }), [
      ['arg', 'from_user', 16, 0xa000n, 8],
      ['kvm_one_reg.addr', 'to_user', 8, 0xb008n, 8],
    ]],
    ['GET_REG_LIST', ioctl('KVM_GET_REG_LIST', 0xa100, { n: 1 }), [
      ['arg', 'from_user', 8, 0xa100n, 8],
      ['arg', 'to_user', 8, 0xa100n, 8],
      ['kvm_reg_list.reg', 'to_user', 8, 0xa108n, 8],
    ]],
    ['CLEAR_DIRTY_LOG: ALIGN(100, 64) / 8 bytes of bitmap', ioctl('KVM_CLEAR_DIRTY_LOG', 0xc000, { slot: 0, num_pages: 100, first_page: 0, dirty_bitmap: '0xd000' }), [
      ['arg', 'from_user', 24, 0xc000n, 8],
      ['kvm_clear_dirty_log.dirty_bitmap', 'from_user', 16, 0xd000n, 8],
    ]],
    ['X86_SETUP_MCE: a __u64', ioctl('KVM_X86_SETUP_MCE', 0xe004), [['arg', 'from_user', 8, 0xe004n, 8]]],
    ['REINJECT_CONTROL is _IO yet copies its struct', ioctl('KVM_REINJECT_CONTROL', 0xe100), [['arg', 'from_user', 32, 0xe100n, 1]]],
    ['KVM_RUN copies nothing', ioctl('KVM_RUN', 0), []],
    ['failed call: not derived', ioctl('KVM_SET_REGS', 0x1000, {}, { ret: -1, errno: 'EFAULT' }), []],
  ])('%s', (_label, rec, want) => {
    expect(derive(rec)).toEqual(want);
  });

  it.each<[string, IoctlRecord, string[]]>([
    // What each handler copies through (kvm_main.c / x86.c): it decides which copy hook can see the copy.
    ['KVM_SET_REGS', ioctl('KVM_SET_REGS', 0x1000), ['memdup_user']],
    ['KVM_SET_SREGS', ioctl('KVM_SET_SREGS', 0x1000), ['memdup_user']],
    ['KVM_SET_FPU', ioctl('KVM_SET_FPU', 0x1000), ['memdup_user']],
    ['KVM_GET_REGS', ioctl('KVM_GET_REGS', 0x1000), ['copy_to_user']],
    ['KVM_SET_VCPU_EVENTS', ioctl('KVM_SET_VCPU_EVENTS', 0x1000), ['copy_from_user']],
    ['KVM_GET_MSRS', ioctl('KVM_GET_MSRS', 0x4000, { nmsrs: 1 }), ['copy_from_user', 'memdup_user', 'copy_to_user']],
    ['KVM_SET_CPUID2', ioctl('KVM_SET_CPUID2', 0x5000, { nent: 1 }), ['copy_from_user', 'vmemdup_user']],
    ['KVM_SET_GSI_ROUTING', ioctl('KVM_SET_GSI_ROUTING', 0x8000, { nr: 1 }), ['copy_from_user', 'vmemdup_user']],
    ['KVM_GET_NESTED_STATE', ioctl('KVM_GET_NESTED_STATE', 0x8000), ['get_user', 'copy_to_user']],
  ])('%s copies through %j', (_n, rec, via) => {
    expect(deriveCopies(rec, { types: types!, ioctl: lookup(rec.name) }).map((c) => c.via)).toEqual(via);
  });

  it('KVM_GET_MSR_INDEX_LIST writes its indices in two pieces (msrs_to_save, emulated_msrs); the feature list in one', () => {
    const list = deriveCopies(ioctl('KVM_GET_MSR_INDEX_LIST', 0x7000, { nmsrs: 5 }, { fd_kind: 'system' }), { types: types!, ioctl: lookup('KVM_GET_MSR_INDEX_LIST') });
    expect(list[2]).toMatchObject({ what: 'kvm_msr_list.indices', len: 20, pieces: 2, via: 'copy_to_user' });
    const feat = deriveCopies(ioctl('KVM_GET_MSR_FEATURE_INDEX_LIST', 0x7000, { nmsrs: 5 }, { fd_kind: 'system' }), { types: types!, ioctl: lookup('KVM_GET_MSR_FEATURE_INDEX_LIST') });
    expect(feat[2].pieces).toBeUndefined();
  });

  it('KVM_SET_SIGNAL_MASK: a sigset right after the 4-byte header is not misaligned (it is a __u8[])', () => {
    const { flags } = flagRecord(ioctl('KVM_SET_SIGNAL_MASK', 0x9000, { len: 8 }), { types: types!, lookup, lineSize: 64 });
    expect(flags.map((f) => [f.what, f.addr, f.len, f.align, f.misaligned])).toEqual([
      ['arg', '0x9000', 4, 4, false],
      ['kvm_signal_mask.sigset', '0x9004', 8, 1, false],
    ]);
    // Not even at an odd address: copy_from_user takes any alignment, and the type asks for none.
    expect(flagRecord(ioctl('KVM_SET_SIGNAL_MASK', 0x9001, { len: 8 }), { types: types!, lookup }).flags[1].misaligned).toBe(false);
  });

  describe('KVM_SET_PMU_EVENT_FILTER follows the running kernel (BTF, not a version number)', () => {
    const rec = () => ioctl('KVM_SET_PMU_EVENT_FILTER', 0xa000, { action: 0, nevents: 3, fixed_counter_bitmap: 0, flags: 0 }, { fd_kind: 'vm' });
    const head = types!.struct('kvm_pmu_event_filter')!;
    const events = findMember(head, 'events')!.offset;
    it('6.4+ (struct kvm_x86_pmu_event_filter exists): the header, then only the events', () => {
      const withX86: TypeSource = { type: (n) => types!.type(n), struct: (n) => (n === 'kvm_x86_pmu_event_filter' ? head : types!.struct(n)) };
      expect(deriveCopies(rec(), { types: withX86, ioctl: lookup('KVM_SET_PMU_EVENT_FILTER') }).map(summary)).toEqual([
        ['arg', 'from_user', head.size, 0xa000n, head.align],
        ['kvm_pmu_event_filter.events', 'from_user', 24, 0xa000n + BigInt(events), 8],
      ]);
    });
    it('before 6.4: the header, then header + events again in one copy', () => {
      const without: TypeSource = { type: (n) => types!.type(n), struct: (n) => (n === 'kvm_x86_pmu_event_filter' ? undefined : types!.struct(n)) };
      expect(deriveCopies(rec(), { types: without, ioctl: lookup('KVM_SET_PMU_EVENT_FILTER') }).map(summary)).toEqual([
        ['arg', 'from_user', head.size, 0xa000n, head.align],
        ['kvm_pmu_event_filter+events', 'from_user', events + 24, 0xa000n, head.align],
      ]);
    });
  });

  it('REINJECT_CONTROL alignment comes from BTF (u8 members)', () => {
    expect(types!.type('kvm_reinject_control')).toEqual({ size: 32, align: 1 });
  });

  it('GET_DIRTY_LOG: bitmap length from the slot size when known, unknown otherwise', () => {
    const rec = ioctl('KVM_GET_DIRTY_LOG', 0xf000, { slot: 1, padding1: 0, dirty_bitmap: '0x10000' }, { fd_kind: 'vm' });
    const known = deriveCopies(rec, { types: types!, ioctl: lookup(rec.name), slots: { slotPages: () => 512 } });
    expect(known.map(summary)).toEqual([
      ['arg', 'from_user', 16, 0xf000n, 8],
      ['kvm_dirty_log.dirty_bitmap', 'to_user', 64, 0x10000n, 8],
    ]);
    const unknown = deriveCopies(rec, { types: types!, ioctl: lookup(rec.name), slots: { slotPages: () => undefined } });
    expect(unknown[1]).toMatchObject({ what: 'kvm_dirty_log.dirty_bitmap', len: null });
    expect(unknown[1].unknown).toMatch(/slot 1/);
  });

  it('SET_XSAVE states its assumption about uabi_size', () => {
    const [c] = deriveCopies(ioctl('KVM_SET_XSAVE', 0x20000), { types: types!, ioctl: lookup('KVM_SET_XSAVE') });
    expect(c).toMatchObject({ len: 4096, dir: 'from_user' });
    expect(c.assumes).toMatch(/uabi_size/);
  });

  it.each<[string, bigint, boolean, boolean]>([
    ['aligned, inside 3 lines', 0x1000n, false, false],
    ['4 off: misaligned, still 3 lines', 0x1004n, true, false],
    ['56 off: aligned but 4 lines', 0x1038n, false, true],
    ['60 off: both', 0x103cn, true, true],
  ])('KVM_SET_REGS %s', (_l, addr, mis, cross) => {
    const { flags } = flagRecord(ioctl('KVM_SET_REGS', addr), { types: types!, lookup, lineSize: 64 });
    expect(flags).toHaveLength(1);
    expect(flags[0]).toMatchObject({ what: 'arg', dir: 'from_user', len: 144, align: 8, misaligned: mis, cacheline_cross: cross, source: 'derived' });
  });

  it('the analyzer learns slot sizes from KVM_SET_USER_MEMORY_REGION', () => {
    const a = new FlagAnalyzer({ types: types!, lookup });
    a.analyze(ioctl('KVM_SET_USER_MEMORY_REGION', 0x3000, { slot: 2, flags: 0, guest_phys_addr: 0, memory_size: 0x100000, userspace_addr: '0x7f0000000000' }, { fd_kind: 'vm' }));
    const out = a.analyze(ioctl('KVM_GET_DIRTY_LOG', 0xf000, { slot: 2, dirty_bitmap: '0x10004' }, { fd_kind: 'vm' }))!;
    // 256 pages → 256 bits → 32 bytes, at a 4-aligned address: misaligned for unsigned long.
    expect(out.flags[1]).toMatchObject({ what: 'kvm_dirty_log.dirty_bitmap', len: 32, misaligned: true });
    expect(out.unknown).toEqual([]);
    a.analyze(ioctl('KVM_GET_DIRTY_LOG', 0xf000, { slot: 5, dirty_bitmap: '0x10000' }, { fd_kind: 'vm' }));
    // region 32 B + 2 × dirty-log header 16 B + bitmap 32 B; one bitmap of unknown length (slot 5 never set)
    expect(a.totals).toEqual({
      copies: 4, bytes: 96, misaligned: 1, cacheline_cross: 0, unknown: 1, observed: 0, derived: 4,
      by_ioctl: { KVM_SET_USER_MEMORY_REGION: { observed: 0, derived: 1, unknown: 0 }, KVM_GET_DIRTY_LOG: { observed: 0, derived: 3, unknown: 1 } },
    });
  });
});

describe.skipIf(!haveBtf)('observed copies (kprobe/fentry CopyRecords, synthetic here)', () => {
  const copy = (tid: number, t: number, dir: CopyRecord['dir'], addr: string, len: number): CopyRecord =>
    ({ type: 'copy', ts_ns: t, pid: 100, tid, dir, addr, len, cmd: '0x0', name: 'KVM_GET_MSRS', fd: 5 });

  it('joins copies by thread and time window and labels them from the derived rules', () => {
    const a = new FlagAnalyzer({ types: types!, lookup });
    const rec = ioctl('KVM_GET_MSRS', 0x4000, { nmsrs: 2 });
    a.analyze(copy(101, rec.enter_ns - 10, 'from_user', '0x9999', 8)); // before the call: not joined
    a.analyze(copy(101, rec.enter_ns + 1, 'from_user', '0x4000', 8));
    a.analyze(copy(101, rec.enter_ns + 2, 'from_user', '0x4008', 32));
    a.analyze(copy(101, rec.enter_ns + 3, 'to_user', '0x4024', 32)); // not what a rule predicts
    a.analyze(copy(202, rec.enter_ns + 3, 'to_user', '0x4008', 32)); // another thread
    const out = a.analyze(rec)!;
    expect(out.source).toBe('observed');
    expect(out.flags.map((f) => [f.what, f.dir, f.addr, f.len, f.align, f.source])).toEqual([
      ['arg', 'from_user', '0x4000', 8, 8, 'observed'],
      ['kvm_msrs.entries', 'from_user', '0x4008', 32, 8, 'observed'],
      ['kvm_msrs.entries', 'to_user', '0x4024', 32, 8, 'observed'], // inside the written-back entries
    ]);
    expect(out.flags[2]).toMatchObject({ misaligned: true, cacheline_cross: true });
    // The other thread's copy waits for that thread's ioctl.
    const other = a.analyze({ ...ioctl('KVM_GET_MSRS', 0x4000, { nmsrs: 2 }), tid: 202, enter_ns: rec.enter_ns, ts_ns: rec.ts_ns })!;
    expect(other.flags.map((f) => f.addr)).toEqual(['0x4008']);
  });

  it('without CopyRecords the flags are derived', () => {
    const out = new FlagAnalyzer({ types: types!, lookup }).analyze(ioctl('KVM_GET_REGS', 0x1000))!;
    expect(out.source).toBe('derived');
    expect(out.flags[0].source).toBe('derived');
  });

  it('an observed copy resolves a length the rules could not derive', () => {
    const a = new FlagAnalyzer({ types: types!, lookup });
    const rec = ioctl('KVM_GET_DIRTY_LOG', 0xf000, { slot: 9, dirty_bitmap: '0x10000' }, { fd_kind: 'vm' });
    a.analyze(copy(101, rec.enter_ns + 1, 'from_user', '0xf000', 16));
    a.analyze(copy(101, rec.enter_ns + 2, 'to_user', '0x10000', 128));
    const out = a.analyze(rec)!;
    expect(out.unknown).toEqual([]);
    expect(out.flags[1]).toMatchObject({ what: 'kvm_dirty_log.dirty_bitmap', len: 128, align: 8, source: 'observed' });
  });
});

describe.skipIf(!haveBtf)('observed and derived copies complement each other (per-hook coverage)', () => {
  const copy = (rec: IoctlRecord, i: number, dir: CopyRecord['dir'], addr: string, len: number, hook: string): CopyRecord =>
    ({ type: 'copy', ts_ns: rec.enter_ns + i, pid: 100, tid: 101, dir, addr, len, cmd: rec.cmd, name: rec.name, fd: 5, hook });
  const rows = (fl: ReturnType<typeof flagRecord>['flags']) => fl.map((f) => [f.what, f.dir, f.addr, f.source, f.hook ?? f.via]);

  it('only the memdup hooks attached (Debian 6.1/6.12): KVM_GET_MSRS keeps its header and write-back derived', () => {
    const a = new FlagAnalyzer({ types: types!, lookup, hooks: ['memdup_user', 'vmemdup_user'] });
    const rec = ioctl('KVM_GET_MSRS', 0x4000, { nmsrs: 2 });
    a.analyze(copy(rec, 1, 'from_user', '0x4008', 32, 'memdup_user'));
    const out = a.analyze(rec)!;
    expect(rows(out.flags)).toEqual([
      ['arg', 'from_user', '0x4000', 'derived', 'copy_from_user'],
      ['kvm_msrs.entries', 'from_user', '0x4008', 'observed', 'memdup_user'],
      ['kvm_msrs.entries', 'to_user', '0x4008', 'derived', 'copy_to_user'],
    ]);
    expect(a.totals.by_ioctl.KVM_GET_MSRS).toEqual({ observed: 1, derived: 2, unknown: 0 });
  });

  it('a copy whose routine an attached hook sees, yet was not observed, was not made: not derived either', () => {
    const rec = ioctl('KVM_SET_REGS', 0x1000);
    const out = flagRecord(rec, { types: types!, lookup }, { observed: [], seen: new Set(['memdup_user']) });
    expect(out.flags).toEqual([]);
    // Without that hook the same call's copy is derived.
    expect(rows(flagRecord(rec, { types: types!, lookup }, { observed: [], seen: new Set() }).flags)).toEqual([['arg', 'from_user', '0x1000', 'derived', 'memdup_user']]);
  });

  it('without the attached hooks, the hooks the call was observed through stand for them', () => {
    const rec = ioctl('KVM_SET_MSRS', 0x4100, { nmsrs: 1 });
    const out = flagRecord(rec, { types: types!, lookup }, { observed: [copy(rec, 1, 'from_user', '0x4108', 16, 'memdup_user')] });
    expect(rows(out.flags)).toEqual([
      ['arg', 'from_user', '0x4100', 'derived', 'copy_from_user'],
      ['kvm_msrs.entries', 'from_user', '0x4108', 'observed', 'memdup_user'],
    ]);
  });

  it('_copy_from_user hooked sees the memdup family too; zero-length copies flag nothing', () => {
    const a = new FlagAnalyzer({ types: types!, lookup });
    a.setHooks(['_copy_from_user', '_copy_to_user']);
    const rec = ioctl('KVM_SET_MSRS', 0x4100, { nmsrs: 0 });
    a.analyze(copy(rec, 1, 'from_user', '0x4100', 8, '_copy_from_user'));
    a.analyze(copy(rec, 2, 'from_user', '0x4108', 0, '_copy_from_user'));
    expect(rows(a.analyze(rec)!.flags)).toEqual([['arg', 'from_user', '0x4100', 'observed', '_copy_from_user']]);
  });

  it('the two pieces of KVM_GET_MSR_INDEX_LIST, when observed, are both flagged as the indices', () => {
    const rec = ioctl('KVM_GET_MSR_INDEX_LIST', 0x7000, { nmsrs: 5 }, { fd_kind: 'system' });
    const observed = [
      copy(rec, 1, 'from_user', '0x7000', 4, '_copy_from_user'),
      copy(rec, 2, 'to_user', '0x7000', 4, '_copy_to_user'),
      copy(rec, 3, 'to_user', '0x7004', 12, '_copy_to_user'),
      copy(rec, 4, 'to_user', '0x7010', 8, '_copy_to_user'),
    ];
    const out = flagRecord(rec, { types: types!, lookup }, { observed, seen: new Set(['copy_from_user', 'copy_to_user']) });
    expect(out.flags.map((f) => [f.what, f.addr, f.len, f.source])).toEqual([
      ['arg', '0x7000', 4, 'observed'],
      ['arg', '0x7000', 4, 'observed'],
      ['kvm_msr_list.indices', '0x7004', 12, 'observed'],
      ['kvm_msr_list.indices', '0x7010', 8, 'observed'],
    ]);
  });
});

describe('routines of observed copies', () => {
  it('hook names from a file that are Object.prototype keys name no routine (fuzz finding)', () => {
    const copy = (hook: string): CopyRecord => ({ hook } as CopyRecord);
    expect([...routinesOf([copy('__proto__'), copy('constructor'), copy('toString')])]).toEqual([]);
    expect([...routinesOf([copy('memdup_user')])]).toEqual(['memdup_user']);
  });
});

describe('CopyJoiner', () => {
  it('is bounded per thread and counts what it drops', () => {
    const j = new CopyJoiner(2);
    for (let i = 0; i < 5; i++) j.add({ type: 'copy', ts_ns: i, pid: 1, tid: 1, dir: 'from_user', addr: '0x0', len: 1, cmd: '0x0', name: '', fd: 0 });
    expect(j.dropped).toBe(3);
    expect(j.take({ tid: 1, enter_ns: 0, ts_ns: 10 }).map((c) => c.ts_ns)).toEqual([3, 4]);
    expect(j.take({ tid: 1, enter_ns: 0, ts_ns: 10 })).toEqual([]);
  });
});
