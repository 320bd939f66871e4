/**
 * The OpenTelemetry export of a VMM that runs its vCPU through dup copies of the vCPU fd (kt-fdvmm,
 * test/helpers/fd-vmm.c, traced by the real BPF programs through the whole capture pipeline into a real
 * OTLP/HTTP receiver and the Prometheus endpoint): one vCPU — one `kvm.vcpu` span, ended by the close or
 * leak of its last fd and parent of every KVM_RUN, one row of VMM handling time whose re-entries through
 * another fd are timed — and the kvm_run addresses on that span even when the capture learns them only
 * after the span's fds closed (`dup-early`: mapped through one fd, run through the other).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FdRecord, IoctlRecord, KvmRunRecord } from '../src/decode/records.js';
import { MonotonicToEpoch, readClockPair } from '../src/export/otel/clock.js';
import { createOtelSink } from '../src/export/otel/sink.js';
import { bpfSkipReason } from './bpf-support.js';
import { buildFdVmm, fdVmmSkipReason, stepOf, traceVmm, type Traced } from './helpers/fd-vmm.js';
import { startOtlpReceiver, type ReceivedSpan } from './helpers/otlp-receiver.js';
import { parsePromText, promSum, type PromSample } from './helpers/prom-text.js';

const skip = bpfSkipReason() ?? fdVmmSkipReason();
if (skip) console.log(`OpenTelemetry kt-fdvmm tests skipped: ${skip}`);

const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-otel-fdvmm-'));
let bin = '';
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Exported {
  t: Traced;
  pid: number;
  spans: ReceivedSpan[];
  scrape: PromSample[];
  pair: MonotonicToEpoch;
}

/** Trace `mode` into the OTel sink; its spans (of the VMM's pid) and a scrape taken after the summary. */
async function exportVmm(mode: string): Promise<Exported> {
  const rx = await startOtlpReceiver();
  const clock = readClockPair();
  const otel = createOtelSink({ endpoint: rx.url, protocol: 'http/protobuf', clock, prometheus: { port: 0 }, warn: () => {} });
  try {
    const { prometheusUrl } = await otel.start();
    // Closed by hand, after the scrape (the capture closes its sinks right after the summary).
    const t = await traceVmm(bin, [mode], [{ write: (r) => otel.write(r), close: async () => {} }]);
    const scrape = parsePromText(await (await fetch(prometheusUrl!)).text());
    await otel.close();
    expect(otel.stats().dropped).toBe(0);
    expect(rx.errors).toEqual([]);
    const pid = Number(stepOf(t, 'setup').pid);
    return { t, pid, spans: rx.spans.filter((s) => s.attributes['process.pid'] === pid), scrape, pair: new MonotonicToEpoch(clock) };
  } finally {
    await otel.close();
    await rx.close();
  }
}

const runsOf = (e: Exported): IoctlRecord[] => e.t.records.filter((r): r is IoctlRecord => r.type === 'ioctl' && r.pid === e.pid && r.name === 'KVM_RUN');

/** The one vCPU span, parent of every KVM_RUN span, which together count every KVM_RUN. */
function oneVcpuSpan(e: Exported): ReceivedSpan {
  const vcpus = e.spans.filter((s) => s.name === 'kvm.vcpu');
  expect(vcpus.map((v) => [v.attributes['kvm.vm'], v.attributes['kvm.vcpu']])).toEqual([[0, 0]]);
  const runSpans = e.spans.filter((s) => s.name === 'KVM_RUN');
  expect(runSpans.length).toBeGreaterThan(0);
  for (const s of runSpans) expect(s.parentSpanId).toBe(vcpus[0].spanId);
  expect(runSpans.reduce((a, s) => a + Number(s.attributes['kvm.run.count']), 0)).toBe(runsOf(e).length);
  return vcpus[0];
}

/** One row of VMM handling time for the vCPU (summary and Prometheus), with every re-entry timed. */
function oneHandlingRow(e: Exported): void {
  const rows = (e.t.summary.vmm_handling?.vcpus ?? []).filter((v) => v.pid === e.pid);
  const reentries = runsOf(e).length - 1;
  expect(rows.map((v) => [v.vm, v.vcpu, v.total.count, v.pending])).toEqual([[0, 0, reentries, 1]]);
  expect(promSum(e.scrape, 'kvm_vmm_handling_duration_seconds_count', { process_pid: String(e.pid) })).toBe(reentries);
  const series = e.scrape.filter((s) => s.name === 'kvm_vmm_handling_duration_seconds_count' && s.labels.process_pid === String(e.pid));
  expect(new Set(series.map((s) => `${s.labels.kvm_vm}/${s.labels.kvm_vcpu}`))).toEqual(new Set(['0/0']));
}

describe.skipIf(skip !== undefined)('OpenTelemetry: a vCPU run through dup copies of its fd', () => {
  beforeAll(() => {
    bin = buildFdVmm(dir);
  });

  it('dup, dup2, dup3, F_DUPFD copies, the original closed: one vCPU span until the copies leak, one handling row', async () => {
    const e = await exportVmm('dup');
    const s = stepOf(e.t, 'setup');
    const d = stepOf(e.t, 'dup');
    // The capture: three KVM_RUNs through three different fds of the one vCPU.
    expect(new Set(runsOf(e).map((r) => r.fd))).toEqual(new Set([Number(s.vcpu), Number(d.dup), Number(d.dupfd_cloexec)]));
    const v = oneVcpuSpan(e);
    // Ended by the leak of the copies at exit, not by the original's close before the runs on the copies.
    expect(v.attributes['kvm.end']).toBe('leak');
    const lastRun = runsOf(e).at(-1)!;
    expect(v.endNs).toBeGreaterThanOrEqual(e.pair.epochNs(lastRun.ts_ns));
    const run = e.t.records.find((r): r is KvmRunRecord => r.type === 'kvm_run' && r.pid === e.pid)!;
    expect(v.attributes).toMatchObject({ 'kvm.run.user_addr': s.run, 'kvm.run.kernel_addr': run.kernel_addr, 'kvm.run.mmap_size': Number(s.run_size) });
    oneHandlingRow(e);
    expect(promSum(e.scrape, 'kvm_exits_total', { process_pid: String(e.pid), kvm_vcpu: '0', kvm_exit_reason: 'HLT' })).toBe(3);
  });

  it('dup before first use, mapped through one fd and run through the other: the addresses reach the span', async () => {
    const e = await exportVmm('dup-early');
    const s = stepOf(e.t, 'setup');
    const copy = Number(stepOf(e.t, 'dup_early').dup);
    const fds = e.t.records.filter((r): r is FdRecord => r.type === 'fd' && r.pid === e.pid && r.op === 'close');
    const lastClose = fds.find((r) => r.fd === copy)!;
    expect(lastClose).toBeDefined();
    const halves = e.t.records.filter((r): r is KvmRunRecord => r.type === 'kvm_run' && r.pid === e.pid);
    const kernel = halves.find((r) => r.kernel_addr)?.kernel_addr;
    expect(kernel).toMatch(/^0xffff[0-9a-f]{12}$/);
    // The decoder shares the vCPU's kvm_run entry at dup time: one record, both halves, before the closes.
    expect(halves).toHaveLength(1);
    expect(halves[0].user_addr).toBe(s.run);
    expect(e.t.records.indexOf(halves[0])).toBeLessThan(e.t.records.indexOf(lastClose));

    const v = oneVcpuSpan(e);
    expect(v.attributes).toMatchObject({ 'kvm.run.user_addr': s.run, 'kvm.run.kernel_addr': kernel, 'kvm.run.mmap_size': Number(s.run_size) });
    // Ended at the close of its last fd (the copy), not at the capture's end.
    expect(v.attributes['kvm.end']).toBe('close');
    expect(v.endNs).toBe(e.pair.epochNs(lastClose.ts_ns));
    oneHandlingRow(e);
  });
});
