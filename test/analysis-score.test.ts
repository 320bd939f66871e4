/**
 * Precision/recall of the buffer flags against ground truth: table tests of the scoring, then the real
 * reference guest's `layout` scenario (its ground-truth log, with records derived from it) scored with the
 * running kernel's BTF: both flags must reach precision and recall 1.0.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BufferFlag, IoctlRecord, TraceRecord } from '../src/decode/records.js';
import { scoreFlags, type TruthIoctl } from '../src/analysis/score.js';
import { kernelTypeSource } from '../src/btf/type-source.js';
import { findMember } from '../src/btf/layout.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';

const flag = (addr: string, dir: BufferFlag['dir'], misaligned: boolean, cross: boolean): BufferFlag =>
  ({ what: 'arg', dir, addr, len: 8, align: 8, misaligned, cacheline_cross: cross, lines: cross ? 2 : 1, min_lines: 1, source: 'derived' });
const rec = (tid: number, cmd: string, arg: string, flags: BufferFlag[]): IoctlRecord => ({
  type: 'ioctl', ts_ns: 2, enter_ns: 1, pid: 1, tid, comm: 'x', fd: 3, fd_kind: 'vcpu', vm: 0, vcpu: 0, cmd, name: 'KVM_X', size: 8, dir: 'readwrite',
  arg, ret: 0, errno: null, latency_ns: 1, flags,
});
const truth = (tid: number, cmd: string, arg: string, buffers: Array<[string, 'from_user' | 'to_user' | 'both', boolean, boolean]>): TruthIoctl => ({
  type: 'ioctl', tid, cmd, arg, buffers: buffers.map(([addr, dir, m, c]) => ({ addr, dir, expected: { misaligned: m, cacheline_cross: c } })),
});

describe('scoreFlags', () => {
  it.each<[string, TruthIoctl[], TraceRecord[], [number, number], [number, number], number]>([
    ['perfect', [truth(7, '0xc008ae88', '0x1001', [['0x1001', 'from_user', true, false], ['0x1009', 'both', true, true]])],
      [rec(7, '0xc008ae88', '0x1001', [flag('0x1001', 'from_user', true, false), flag('0x1009', 'from_user', true, true), flag('0x1009', 'to_user', true, true)])],
      [1, 1], [1, 1], 0],
    ['a missed positive lowers recall', [truth(7, '0xae', '0x10', [['0x10', 'from_user', true, false], ['0x20', 'from_user', true, true]])],
      [rec(7, '0xae', '0x10', [flag('0x10', 'from_user', true, false), flag('0x20', 'from_user', false, true)])],
      [1, 0.5], [1, 1], 1],
    ['a false positive lowers precision', [truth(7, '0xae', '0x10', [['0x10', 'to_user', false, false], ['0x40', 'to_user', true, false]])],
      [rec(7, '0xae', '0x10', [flag('0x10', 'to_user', true, false), flag('0x40', 'to_user', true, false)])],
      [0.5, 1], [1, 1], 1],
    ['a flag in the other direction does not match', [truth(7, '0xae', '0x10', [['0x10', 'from_user', true, false]])],
      [rec(7, '0xae', '0x10', [flag('0x10', 'to_user', true, false)])],
      [0, 0], [1, 1], 1],
    ['an uncaptured call: its positives are missed', [truth(7, '0xae', '0x10', [['0x10', 'from_user', true, true]])],
      [rec(8, '0xae', '0x10', [flag('0x10', 'from_user', true, true)])],
      [0, 0], [0, 0], 1],
    ['flags on buffers the truth does not annotate are not scored', [truth(7, '0xae', '0x10', [['0x10', 'from_user', false, false]])],
      [rec(7, '0xae', '0x10', [flag('0x10', 'from_user', false, false), flag('0x90', 'to_user', true, true)])],
      [1, 1], [1, 1], 0],
    ['repeated calls pair up in order', [truth(7, '0xae', '0x10', [['0x10', 'from_user', false, false]]), truth(7, '0xae', '0x10', [['0x10', 'from_user', true, false]])],
      [rec(7, '0xae', '0x10', [flag('0x10', 'from_user', false, false)]), rec(7, '0xAE', '0x0010', [flag('0x10', 'from_user', true, false)])],
      [1, 1], [1, 1], 0],
  ])('%s', (_l, gt, records, [mp, mr], [cp, cr], mismatches) => {
    const s = scoreFlags(gt, records);
    expect([s.misaligned.precision, s.misaligned.recall]).toEqual([mp, mr]);
    expect([s.cacheline_cross.precision, s.cacheline_cross.recall]).toEqual([cp, cr]);
    expect(s.mismatches).toHaveLength(mismatches);
  });

  it('counts every cell of the confusion matrix', () => {
    const s = scoreFlags(
      [truth(1, '0x1', '0x0', [['0x0', 'both', true, false], ['0x8', 'both', false, false], ['0x10', 'both', true, true], ['0x18', 'both', false, true]])],
      [rec(1, '0x1', '0x0', [flag('0x0', 'to_user', true, true), flag('0x8', 'to_user', false, false), flag('0x10', 'to_user', false, true)])],
    );
    expect(s.misaligned).toMatchObject({ tp: 1, fp: 0, fn: 1, tn: 2 });
    expect(s.cacheline_cross).toMatchObject({ tp: 1, fp: 1, fn: 1, tn: 1 });
    expect([s.buffers, s.matched, s.missing_calls]).toEqual([4, 3, 0]);
  });
});

// ---- the real reference guest -------------------------------------------------------------------------

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'dist/src/cli/main.js');
const { types, error } = kernelTypeSource();
const canKvm = existsSync('/dev/kvm') && process.getuid?.() === 0;
const built = existsSync(join(root, 'dist/src/guest/vcpu-worker.js'));
const why = !canKvm ? 'needs root and /dev/kvm' : !types ? `no kernel BTF (${error})` : !built ? 'dist/ not built (npx tsc -p . or npm test)' : '';
if (why) console.log(`skipping the layout-scenario score: ${why}`);
if (canKvm && existsSync('/sys/kernel/btf/vmlinux') && !built) throw new Error('this machine can run the layout scenario: build dist/ first (npx tsc -p .)');

/** Flexible-array members whose element count the decoder reads from the argument header. */
const COUNT_FIELD: Record<string, string> = { kvm_msrs: 'nmsrs', kvm_cpuid2: 'nent', kvm_msr_list: 'nmsrs', kvm_irq_routing: 'nr', kvm_reg_list: 'n' };

/**
 * The records a capture of the guest would hold, built from its own log: same tid, cmd, arg, ret. The
 * capture's decoder reads nested element counts (nmsrs, nent) from the argument in user memory; here they
 * come from the logged buffer lengths divided by the element size from BTF.
 */
function recordsFromTruth(lines: Array<Record<string, any>>): TraceRecord[] {
  const pid = lines.find((l) => l.type === 'summary')?.pid ?? 0;
  return lines.filter((l) => l.type === 'ioctl').map((g) => {
    const args: Record<string, unknown> = {};
    for (const b of g.buffers ?? []) {
      const [struct, member] = String(b.what).split('.');
      if (!member || !COUNT_FIELD[struct]) continue;
      const elem = findMember(types!.struct(struct)!, member)!.member.elemSize!;
      args[COUNT_FIELD[struct]] = b.len / elem;
    }
    return {
      type: 'ioctl', ts_ns: g.t1_ns, enter_ns: g.t0_ns, pid, tid: g.tid, comm: 'kvm-trace', fd: g.fd, fd_kind: g.fd_kind, vm: 0, vcpu: g.vcpu,
      cmd: g.cmd, name: g.name, size: g.size, dir: ioctlByName(g.name).dir, arg: g.arg, ret: g.ret, errno: g.errno,
      latency_ns: g.t1_ns - g.t0_ns, args,
    } satisfies IoctlRecord;
  });
}

describe.skipIf(!!why)('the layout scenario of the reference guest', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-score-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('derived flags reach precision and recall 1.0 on both flags', () => {
    const log = join(dir, 'gt.jsonl');
    const r = spawnSync(process.execPath, [bin, 'guest', '--scenario', 'layout', '--vcpus', '2', '--log', log], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const gt = lines.filter((l) => l.type === 'ioctl');
    const annotated = gt.filter((l) => l.buffers?.length);
    const positives = annotated.flatMap((l) => l.buffers).filter((b: any) => b.expected.misaligned || b.expected.cacheline_cross);
    // The scenario must exercise both flags, or a score of 1.0 would say nothing.
    expect(annotated.length).toBeGreaterThan(50);
    expect(positives.some((b: any) => b.expected.misaligned)).toBe(true);
    expect(positives.some((b: any) => b.expected.cacheline_cross)).toBe(true);

    const s = scoreFlags(gt, recordsFromTruth(lines), { types, lookup: ioctlByName, lineSize: 64 });
    console.log(JSON.stringify({ buffers: s.buffers, matched: s.matched, misaligned: s.misaligned, cacheline_cross: s.cacheline_cross }));
    expect(s.mismatches).toEqual([]);
    expect(s.missing_calls).toBe(0);
    expect(s.matched).toBe(s.buffers);
    expect(s.misaligned).toMatchObject({ precision: 1, recall: 1 });
    expect(s.cacheline_cross).toMatchObject({ precision: 1, recall: 1 });
    expect(s.misaligned.tp).toBeGreaterThan(0);
    expect(s.cacheline_cross.tp).toBeGreaterThan(0);
  });
});
