/**
 * The kvm_run addresses of a vCPU reach its span whatever the order of the records (real span builder, real
 * SDK, real OTLP/HTTP receiver): the decoder reports a kvm_run it could only half join when the process exits,
 * after the vCPU's fds closed, and possibly in two halves. Exported in that late order, the vCPU spans equal
 * those of the in-order export (attributes, end time, end reason); a closed vCPU that ran waits for the record
 * (its span is ended at its close time once the record comes), one that never ran does not wait.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { FdRecord, IoctlRecord, KvmRunRecord, TraceRecord } from '../src/decode/records.js';
import { MonotonicToEpoch, readClockPair } from '../src/export/otel/clock.js';
import { createOtelSink, exportRecords } from '../src/export/otel/sink.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './helpers/otlp-receiver.js';
import { syntheticCapture } from './helpers/otel-records.js';

const clock = readClockPair();
const startNs = MonotonicToEpoch.nowNs() - 100_000_000;
const rx: OtlpReceiver = await startOtlpReceiver();
afterAll(() => rx.close());

/** The kvm.vcpu spans of one export, by vCPU id, without the ids that differ between exports. */
async function vcpuSpans(records: TraceRecord[]): Promise<Map<number, Pick<ReceivedSpan, 'attributes' | 'startNs' | 'endNs'>>> {
  const before = rx.spans.length;
  const stats = await exportRecords(records, { endpoint: rx.url, metrics: false, clock, warn: () => {} });
  expect(stats.dropped).toBe(0);
  const spans = rx.spans.slice(before).filter((s) => s.name === 'kvm.vcpu');
  return new Map(spans.map((s) => [s.attributes['kvm.vcpu'] as number, { attributes: s.attributes, startNs: s.startNs, endNs: s.endNs }]));
}

describe('kvm_run addresses reported after the vCPU closed', () => {
  it('late and in halves, as at process exit: the same vCPU spans as in order', async () => {
    const cap = syntheticCapture({ startNs, vcpus: 2, runsPerVcpu: 50 });
    const inOrder = await vcpuSpans(cap.records);
    expect([...inOrder.keys()].sort()).toEqual([0, 1]);
    for (const v of inOrder.values()) expect(v.attributes['kvm.run.user_addr']).toBeDefined();

    // Late: every kvm_run record moved to just before the summary (after every close); vCPU 1's in two halves.
    const runs = cap.records.filter((r): r is KvmRunRecord => r.type === 'kvm_run');
    const rest = cap.records.filter((r) => r.type !== 'kvm_run');
    const summary = rest.pop()!;
    expect(summary.type).toBe('summary');
    const lastClose = rest.findLastIndex((r) => r.type === 'fd' && r.op === 'close');
    expect(lastClose).toBe(rest.length - 1);
    const late: KvmRunRecord[] = runs.flatMap((r) =>
      r.vcpu === 1 ? [{ ...r, kernel_addr: null }, { ...r, user_addr: null, mmap_size: null }] : [r],
    );
    const lateSpans = await vcpuSpans([...rest, ...late, summary]);
    expect(lateSpans).toEqual(inOrder);
    for (const [id, v] of lateSpans) {
      const close = rest.find((r): r is FdRecord => r.type === 'fd' && r.op === 'close' && r.vcpu === id)!;
      expect(v.attributes['kvm.end']).toBe('close');
      expect(v.endNs).toBe(new MonotonicToEpoch(clock).epochNs(close.ts_ns));
    }
  });

  it('a closed vCPU that ran is held until its kvm_run record comes; one that never ran is not', async () => {
    const sink = createOtelSink({ endpoint: rx.url, metrics: false, clock, warn: () => {} });
    const before = rx.spans.length;
    try {
      let t = startNs;
      const pid = 4242;
      /** One ioctl record; `arg` is KVM_CREATE_VCPU's vCPU id. */
      const ioctl = (fd: number, fdKind: IoctlRecord['fd_kind'], vcpu: number | null, name: string, cmd: string, ret: number, arg = 0, exit?: IoctlRecord['exit']): IoctlRecord => {
        t += 10_000;
        const vm = fdKind === 'system' ? null : 0;
        const e = exit ? { exit } : {};
        return { type: 'ioctl', ts_ns: t, enter_ns: t - 5_000, pid, tid: pid, comm: 'late-vmm', fd, fd_kind: fdKind, vm, vcpu, cmd, name, size: 0, dir: 'none', arg: `0x${arg}`, ret, errno: null, latency_ns: 5_000, ...e };
      };
      const fd = (op: FdRecord['op'], n: number, kind: FdRecord['fd_kind'], vcpu: number | null): FdRecord => {
        t += 10_000;
        return { type: 'fd', ts_ns: t, pid, tid: pid, op, fd: n, fd_kind: kind, vm: kind === 'system' ? null : 0, vcpu };
      };
      for (const r of [
        fd('open', 3, 'system', null),
        ioctl(3, 'system', null, 'KVM_CREATE_VM', '0xae01', 4),
        fd('open', 4, 'vm', null),
        ioctl(4, 'vm', null, 'KVM_CREATE_VCPU', '0xae41', 5),
        fd('open', 5, 'vcpu', 0),
        ioctl(4, 'vm', null, 'KVM_CREATE_VCPU', '0xae41', 6, 1),
        fd('open', 6, 'vcpu', 1),
        ioctl(5, 'vcpu', 0, 'KVM_RUN', '0xae80', 0, 0, { reason: 'HLT', code: 5 }),
      ]) {
        sink.write(r);
      }
      const spans0 = sink.stats().spans;
      sink.write(fd('close', 6, 'vcpu', 1)); // never ran: nothing is coming for it
      expect(sink.stats().spans - spans0, 'the idle vCPU span ends at its close').toBe(1);
      sink.write(fd('close', 5, 'vcpu', 0)); // ran: its kvm_run record is still to come
      const spans1 = sink.stats().spans;
      expect(spans1 - spans0, 'the run vCPU waits for its kvm_run record (its run window ended)').toBe(2);
      sink.write({ type: 'kvm_run', pid, vcpu: 0, fd: 5, kernel_addr: '0xffff888100a4c000', user_addr: '0x7f1234000000', mmap_size: 12288 });
      expect(sink.stats().spans - spans1, 'the kvm_run record ends it').toBe(1);
    } finally {
      await sink.close();
    }
    const vcpus = rx.spans.slice(before).filter((s) => s.name === 'kvm.vcpu');
    expect(vcpus.map((v) => [v.attributes['kvm.vcpu'], v.attributes['kvm.end'], v.attributes['kvm.run.kernel_addr'] ?? null]).sort()).toEqual([
      [0, 'close', '0xffff888100a4c000'],
      [1, 'close', null],
    ]);
  });
});
