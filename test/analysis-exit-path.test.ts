/**
 * The exit path on plain records: handling keys (IO port + direction, MMIO page + direction, reasons,
 * errors), VMM handling time per vCPU (two VMs of one process both with a vCPU 0 stay apart; a closed and
 * reused fd starts a new vCPU; untimed, overlapping and pending re-entries are counted, not timed), the
 * perf-kvm-stat-style shares (the histogram itself: test/histogram.test.ts).
 */
import { describe, expect, it } from 'vitest';
import type { IoctlRecord, TraceRecord } from '../src/decode/records.js';
import { exitKeyOf, exitReasonOf } from '../src/analysis/exit-key.js';
import { VmmHandlingTracker, type HandlingSample } from '../src/analysis/vmm-handling.js';
import { ExitStatsTracker } from '../src/analysis/exit-stats.js';
import { ExitPathAnalyzer } from '../src/analysis/exit-path.js';

type Exit = IoctlRecord['exit'];

function run(p: Partial<IoctlRecord> & { enter_ns: number; ts_ns: number }): IoctlRecord {
  return {
    type: 'ioctl', pid: 100, tid: 101, comm: 'vmm', fd: 10, fd_kind: 'vcpu', vm: 0, vcpu: 0, cmd: '0xae80', name: 'KVM_RUN',
    size: 0, dir: 'none', arg: '0x0', ret: 0, errno: null, latency_ns: p.ts_ns - p.enter_ns, exit: { reason: 'HLT', code: 5 }, ...p,
  };
}

const io = (port: number, direction: 'in' | 'out' | number): Exit => ({ reason: 'IO', code: 2, direction, size: 1, port, count: 1 });
const mmio = (phys_addr: string, is_write: boolean | number): Exit => ({ reason: 'MMIO', code: 6, phys_addr, len: 4, is_write });

describe('handling keys', () => {
  it.each<[string, Pick<IoctlRecord, 'exit' | 'ret' | 'errno'>, number, string]>([
    ['IO out', { exit: io(0x3f8, 'out'), ret: 0, errno: null }, 4096, 'IO out 0x3f8'],
    ['IO in', { exit: io(0x11, 'in'), ret: 0, errno: null }, 4096, 'IO in 0x11'],
    ['IO, raw direction byte', { exit: io(0x10, 1), ret: 0, errno: null }, 4096, 'IO out 0x10'],
    ['IO without details (--lean)', { exit: { reason: 'IO', code: 2 }, ret: 0, errno: null }, 4096, 'IO'],
    ['MMIO write, page range', { exit: mmio('0xfee00030', true), ret: 0, errno: null }, 4096, 'MMIO write 0xfee00000-0xfee00fff'],
    ['MMIO read, page start', { exit: mmio('0xd0000', false), ret: 0, errno: null }, 4096, 'MMIO read 0xd0000-0xd0fff'],
    ['MMIO, 512-byte granule', { exit: mmio('0xd0234', 0), ret: 0, errno: null }, 512, 'MMIO read 0xd0200-0xd03ff'],
    ['MMIO above 4 GiB', { exit: mmio('0x100000fee000', 1), ret: 0, errno: null }, 4096, 'MMIO write 0x100000fee000-0x100000feefff'],
    ['HLT', { exit: { reason: 'HLT', code: 5 }, ret: 0, errno: null }, 4096, 'HLT'],
    ['INTR (-EINTR)', { exit: { reason: 'INTR', code: 10 }, ret: -4, errno: 'EINTR' }, 4096, 'INTR'],
    ['failed, no exit', { ret: -14, errno: 'EFAULT' }, 4096, 'error EFAULT'],
  ])('%s → %s', (_l, r, granule, key) => {
    expect(exitKeyOf(r, granule).key).toBe(key);
  });

  it('keeps the parts of the key as fields', () => {
    expect(exitKeyOf({ exit: io(0x3f8, 'out'), ret: 0, errno: null })).toEqual({ key: 'IO out 0x3f8', reason: 'IO', dir: 'out', port: 0x3f8 });
    expect(exitKeyOf({ exit: mmio('0xfee00030', true), ret: 0, errno: null })).toMatchObject({ reason: 'MMIO', dir: 'write', addr: '0xfee00000' });
    expect(exitReasonOf({ ret: -14, errno: 'EFAULT' })).toBe('error EFAULT');
  });
});

/** A vCPU loop: exits with `gap` ns of handling before each re-entry, `lat` ns in KVM_RUN. */
function loop(n: number, base: Partial<IoctlRecord>, start: number, gap: (i: number) => number, exit: (i: number) => Exit, lat = 5000): IoctlRecord[] {
  const out: IoctlRecord[] = [];
  let t = start;
  for (let i = 0; i < n; i++) {
    out.push(run({ ...base, enter_ns: t, ts_ns: t + lat, exit: exit(i) }));
    t += lat + gap(i);
  }
  return out;
}

function track(records: TraceRecord[]) {
  const samples: HandlingSample[] = [];
  const t = new VmmHandlingTracker({ onSample: (s) => samples.push(s) });
  for (const r of records) t.write(r);
  return { samples, sum: t.summary() };
}

describe('VMM handling time', () => {
  it('times every re-entry by the exit it followed; the last return stays pending', () => {
    const recs = loop(5, {}, 1_000_000, (i) => 1000 * (i + 1), (i) => (i % 2 ? io(0x10, 'out') : mmio('0xd0004', false)));
    const { samples, sum } = track(recs);
    expect(samples.map((s) => [s.key, s.ns])).toEqual([
      ['MMIO read 0xd0000-0xd0fff', 1000],
      ['IO out 0x10', 2000],
      ['MMIO read 0xd0000-0xd0fff', 3000],
      ['IO out 0x10', 4000],
    ]);
    expect(sum.vcpus).toHaveLength(1);
    const v = sum.vcpus[0];
    expect(v).toMatchObject({ pid: 100, vm: 0, vcpu: 0, fd: 10, pending: 1 });
    expect(v.total).toMatchObject({ count: 4, min_ns: 1000, max_ns: 4000, sum_ns: 10000 });
    expect(v.by_exit.map((k) => [k.key, k.count, k.min_ns, k.max_ns])).toEqual([
      ['IO out 0x10', 2, 2000, 4000],
      ['MMIO read 0xd0000-0xd0fff', 2, 1000, 3000],
    ]);
  });

  it('two VMs of one process, both with a vCPU 0, on different fds stay apart', () => {
    const a = loop(3, { vm: 0, fd: 10, tid: 201 }, 0, () => 1000, () => io(0x10, 'out'));
    const b = loop(3, { vm: 1, fd: 12, tid: 202 }, 500, () => 7000, () => io(0x10, 'out'));
    const merged = [...a, ...b].sort((x, y) => x.ts_ns - y.ts_ns);
    const { sum } = track(merged);
    expect(sum.vcpus.map((v) => [v.vm, v.vcpu, v.fd, v.total.count, v.total.max_ns])).toEqual([
      [0, 0, 10, 2, 1000],
      [1, 0, 12, 2, 7000],
    ]);
  });

  it('a closed fd ends its vCPU; the same number reused by another vCPU starts afresh', () => {
    const first = loop(2, { vcpu: 0, fd: 10 }, 0, () => 1000, () => io(0x10, 'out'));
    const close: TraceRecord = { type: 'fd', ts_ns: 20_000, pid: 100, tid: 100, op: 'close', fd: 10, fd_kind: 'vcpu', vm: 0, vcpu: 0 };
    const second = loop(2, { vcpu: 3, fd: 10 }, 30_000, () => 2000, () => io(0x10, 'out'));
    const { samples, sum } = track([...first, close, ...second]);
    expect(samples.map((s) => [s.vcpu, s.ns])).toEqual([
      [0, 1000],
      [3, 2000],
    ]);
    expect(sum.vcpus.map((v) => [v.vcpu, v.total.count, v.pending])).toEqual([
      [0, 1, 1],
      [3, 1, 1],
    ]);
  });

  it('without the close, a different vCPU id on the fd still starts a new vCPU', () => {
    const first = loop(2, { vcpu: 0, fd: 10 }, 0, () => 1000, () => io(0x10, 'out'));
    const second = loop(2, { vcpu: 1, fd: 10 }, 30_000, () => 2000, () => io(0x10, 'out'));
    const { sum } = track([...first, ...second]);
    expect(sum.vcpus.map((v) => [v.vcpu, v.total.count, v.pending])).toEqual([
      [0, 1, 1],
      [1, 1, 1],
    ]);
  });

  it('a dup copy of the vCPU fd is the same vCPU: re-entries through the copy are timed, one row, ended by the last close', () => {
    const first = loop(2, { fd: 10 }, 0, () => 1000, () => io(0x10, 'out'));
    const dup: TraceRecord = { type: 'fd', ts_ns: 15_000, pid: 100, tid: 100, op: 'open', fd: 11, fd_kind: 'vcpu', vm: 0, vcpu: 0, via: 'dup', dup_of: 10 };
    const closeOriginal: TraceRecord = { type: 'fd', ts_ns: 16_000, pid: 100, tid: 100, op: 'close', fd: 10, fd_kind: 'vcpu', vm: 0, vcpu: 0 };
    const second = loop(2, { fd: 11 }, 20_000, () => 3000, () => io(0x10, 'out'));
    const closeCopy: TraceRecord = { type: 'fd', ts_ns: 40_000, pid: 100, tid: 100, op: 'close', fd: 11, fd_kind: 'vcpu', vm: 0, vcpu: 0 };
    const { samples, sum } = track([...first, dup, closeOriginal, ...second, closeCopy]);
    // 1000 within the first loop; the return on fd 10 at 11 000 to the entry on fd 11 at 20 000; 3000 within the second.
    expect(samples.map((s) => [s.fd, s.ns])).toEqual([
      [10, 1000],
      [11, 9000],
      [11, 3000],
    ]);
    expect(sum.vcpus.map((v) => [v.vm, v.vcpu, v.fd, v.total.count, v.pending])).toEqual([[0, 0, 10, 3, 1]]);
  });

  it('a re-entry seen without its enter, or entering before the previous return, is counted, not timed', () => {
    const recs = [
      run({ enter_ns: 0, ts_ns: 5000 }),
      run({ enter_ns: 0, ts_ns: 12000, no_enter: true, latency_ns: 0 }),
      run({ enter_ns: 11000, ts_ns: 20000, tid: 102 }), // another thread's call, queued on the vCPU mutex
      run({ enter_ns: 21000, ts_ns: 25000 }),
    ];
    const { samples, sum } = track(recs);
    expect(samples.map((s) => s.ns)).toEqual([1000]);
    expect(sum).toMatchObject({ untimed: 1, overlapped: 1 });
  });

  it('folds keys past the per-vCPU cap into "<reason> other"', () => {
    const t = new VmmHandlingTracker({ maxKeysPerVcpu: 2 });
    for (const r of loop(6, {}, 0, () => 100, (i) => io(i, 'out'))) t.write(r);
    expect(t.summary().vcpus[0].by_exit.map((k) => [k.key, k.count])).toEqual([
      ['IO other', 3],
      ['IO out 0x0', 1],
      ['IO out 0x1', 1],
    ]);
  });

  it('rejects an MMIO granule that is not a power of two', () => {
    expect(() => new VmmHandlingTracker({ mmioGranule: 3000 })).toThrow(/power of two/);
  });
});

describe('exit table (perf kvm stat style)', () => {
  it('samples, shares of calls and of KVM_RUN time, latency spread per reason', () => {
    const t = new ExitStatsTracker();
    for (let i = 0; i < 9; i++) t.add(run({ enter_ns: 0, ts_ns: 1000, exit: io(0x10, 'out') }));
    t.add(run({ enter_ns: 0, ts_ns: 11000, exit: { reason: 'HLT', code: 5 } }));
    t.add(run({ enter_ns: 0, ts_ns: 0, latency_ns: 0, no_enter: true, exit: { reason: 'HLT', code: 5 } }));
    t.add(run({ enter_ns: 0, ts_ns: 500, ret: -14, errno: 'EFAULT', exit: undefined }));
    const rows = t.rows();
    expect(rows.map((r) => [r.reason, r.samples, r.pct, r.time_pct, r.min_ns, r.max_ns, r.untimed])).toEqual([
      ['IO', 9, 75, 43.9, 1000, 1000, undefined],
      ['HLT', 2, 16.67, 53.66, 11000, 11000, 1],
      ['error EFAULT', 1, 8.33, 2.44, 500, 500, undefined],
    ]);
  });

  it('the analyzer says nothing when no KVM_RUN was seen', () => {
    const a = new ExitPathAnalyzer();
    a.write({ type: 'lost', count: 1 });
    expect(a.fields()).toBeUndefined();
    a.write(run({ enter_ns: 0, ts_ns: 10 }));
    expect(a.fields()?.exit_stats).toHaveLength(1);
  });
});

describe('summary text of many vCPUs', () => {
  it('per-exit tables for the first `detailed` vCPUs, one line for each other one', async () => {
    const { vmmHandlingText } = await import('../src/report/exit-path-section.js');
    const t = new VmmHandlingTracker();
    for (let v = 0; v < 12; v++) for (const r of loop(3, { vcpu: v, fd: 20 + v, tid: 300 + v }, v * 1_000_000, () => 1000, () => io(0x10, 'out'))) t.write(r);
    const lines = vmmHandlingText(t.summary(), 8);
    expect(lines.filter((l) => /^  pid 100 vm 0 vcpu \d+ fd \d+ vmm: re-entries 2  pending 1$/.test(l))).toHaveLength(8);
    expect(lines).toContain('  4 more vCPUs (per-exit detail in the JSON summary and in `report`):');
    expect(lines.filter((l) => /^    pid 100 vm 0 vcpu (8|9|10|11) fd \d+ vmm\s+2\s+1\s/.test(l))).toHaveLength(4);
  });
});
