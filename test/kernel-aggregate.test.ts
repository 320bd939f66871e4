/**
 * The kernel aggregate seen per process / VM / vCPU (src/analysis/kernel-aggregate.ts), on plain numbers:
 * kernel exit keys spelled as the full capture spells them, VM indices in creation order, the summary shapes.
 */
import { describe, expect, it } from 'vitest';
import { emptyCounters, emptyHist, vmIndexes, type AggHist, type AggVcpu, type KernelAggregate } from '../src/bpf/aggregate.js';
import { KT_XK_ERROR, KT_XK_FOLDED, KT_XK_IO, KT_XK_MMIO, KT_XK_REASON } from '../src/bpf/event-layout.js';
import { exitKeyFromKernel, exitsByVcpu, handlingSummary, runSplitOf, vcpuViews } from '../src/analysis/kernel-aggregate.js';
import { exitKeyOf } from '../src/analysis/exit-key.js';
import type { IoctlRecord } from '../src/decode/records.js';

const x = (kind: number, reason: number, o: { port?: number; dir?: number; addr?: bigint } = {}) => ({ kind, reason, port: o.port ?? 0, dir: o.dir ?? 0, addr: o.addr ?? 0n });
const run = (exit: IoctlRecord['exit'], ret = 0, errno: string | null = null) => ({ exit, ret, errno });

describe('kernel exit keys are the full capture’s keys', () => {
  it.each([
    ['IO out', x(KT_XK_IO, 2, { port: 0x3f8, dir: 1 }), run({ reason: 'IO', code: 2, direction: 'out', port: 0x3f8 })],
    ['IO in', x(KT_XK_IO, 2, { port: 0x11, dir: 0 }), run({ reason: 'IO', code: 2, direction: 'in', port: 0x11 })],
    ['MMIO write (page)', x(KT_XK_MMIO, 6, { dir: 1, addr: 0xfee00000n }), run({ reason: 'MMIO', code: 6, is_write: true, phys_addr: '0xfee000b0' })],
    ['MMIO read', x(KT_XK_MMIO, 6, { dir: 0, addr: 0xd0000n }), run({ reason: 'MMIO', code: 6, is_write: false, phys_addr: '0xd0ff8' })],
    ['HLT', x(KT_XK_REASON, 5), run({ reason: 'HLT', code: 5 })],
    ['a failed KVM_RUN', x(KT_XK_ERROR, 14), run(undefined, -14, 'EFAULT')],
  ] as const)('%s', (_what, kernel, record) => {
    expect(exitKeyFromKernel(kernel, 4096)).toEqual(exitKeyOf(record as Pick<IoctlRecord, 'exit' | 'ret' | 'errno'>));
  });

  it('a key the kernel folded (hash full) is "<reason> other"', () => {
    expect(exitKeyFromKernel(x(KT_XK_FOLDED, 2), 4096)).toEqual({ key: 'IO other', reason: 'IO' });
  });
});

const hist = (count: number, sumNs: number): AggHist => ({ ...emptyHist(), count, sumNs, minNs: 100, maxNs: 900, hist: emptyHist().hist.map((_, i) => (i === 40 ? count : 0)) });
const vcpu = (tgid: number, vcpuId: number, kvm: string, reasons: Array<[number, number]>, runs: number): AggVcpu => ({
  key: { tgid, vcpuId, kvm },
  run: { ...emptyCounters(), count: runs },
  reasons: new Map(reasons),
  hw: { runs: 0, exits: 0, maxExits: 0, guestNs: 0, runNs: 0 },
});
const agg = (o: Partial<KernelAggregate>): KernelAggregate => ({
  ioctls: new Map(), ioctlOverflow: undefined, vcpus: [], vcpuOverflow: undefined, handling: [], handlingOverflow: undefined, hw: [], hwOverflow: undefined, vms: [], ...o,
});

describe('VM indices: creation order per process', () => {
  it('VMs created while attached by creation time; earlier ones first, by address', () => {
    const a = agg({
      vcpus: [vcpu(7, 0, '0xb000', [], 1), vcpu(7, 0, '0xa000', [], 1), vcpu(7, 0, '0x9000', [], 1), vcpu(8, 0, '0xc000', [], 1)],
      vms: [{ kvm: '0xa000', tgid: 7, fd: 5, createdNs: 200 }, { kvm: '0xb000', tgid: 7, fd: 4, createdNs: 100 }],
    });
    expect(Object.fromEntries(vmIndexes(a))).toEqual({ '7/0x9000': 0, '7/0xb000': 1, '7/0xa000': 2, '8/0xc000': 0 });
  });
});

describe('summary shapes from the kernel', () => {
  const a = agg({
    vcpus: [vcpu(7, 0, '0xa000', [[2, 3], [5, 1]], 4), vcpu(7, 1, '0xa000', [[2, 2]], 3), vcpu(7, -1, '0x0', [], 2)],
    handling: [
      { vcpu: { tgid: 7, vcpuId: 0, kvm: '0xa000' }, exit: x(KT_XK_IO, 2, { port: 0x10, dir: 1 }), hist: hist(3, 3000) },
      { vcpu: { tgid: 7, vcpuId: 1, kvm: '0xa000' }, exit: x(KT_XK_IO, 2, { port: 0x10, dir: 1 }), hist: hist(2, 1000) },
    ],
    vms: [{ kvm: '0xa000', tgid: 7, fd: 4, createdNs: 1 }],
  });
  const views = vcpuViews(a, 4096);

  it('exits per "pid/vcpu", by name', () => {
    expect(exitsByVcpu(views)).toEqual({ '7/0': { IO: 3, HLT: 1 }, '7/1': { IO: 2 } });
  });

  it('vmm_handling: per resolved vCPU, keyed like records, pending = calls − re-entries, no fd', () => {
    const h = handlingSummary(views, () => 'vmm', 0, 4096);
    expect(h.vcpus.map((v) => [v.vm, v.vcpu, v.fd, v.total.count, v.pending, v.by_exit.map((e) => e.key)])).toEqual([
      [0, 0, null, 3, 1, ['IO out 0x10']],
      [0, 1, null, 2, 1, ['IO out 0x10']],
    ]);
    expect(h.vcpus[0].total).toMatchObject({ min_ns: 100, max_ns: 900, sum_ns: 3000 });
  });

  it('no time split without hardware-exit totals', () => {
    expect(runSplitOf(views)).toEqual([]);
  });
});
