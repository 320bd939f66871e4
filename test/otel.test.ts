/**
 * OpenTelemetry span export against a real OTLP/HTTP receiver (node:http on 127.0.0.1), protobuf and JSON:
 * the trace tree, attribute values equal to the records, timestamps inside the run's wall-clock window, one
 * span per non-RUN ioctl, KVM_RUN aggregation/sampling counts, and delivery accounting when the collector is
 * unreachable or the queue overflows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IoctlRecord } from '../src/decode/records.js';
import { MonotonicToEpoch, readClockPair } from '../src/export/otel/clock.js';
import type { OtlpProtocol } from '../src/export/otel/options.js';
import { createOtelSink, exportRecords, type OtelStats } from '../src/export/otel/sink.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './helpers/otlp-receiver.js';
import { syntheticCapture, type SyntheticCapture } from './helpers/otel-records.js';
import { freePort } from './helpers/ports.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A capture whose records all lie between two wall-clock readings taken around it. */
async function timedCapture(vcpus = 2, runsPerVcpu = 500) {
  const t0Ms = performance.timeOrigin + performance.now();
  const cap = syntheticCapture({ startNs: MonotonicToEpoch.nowNs() + 1000, vcpus, runsPerVcpu });
  while (MonotonicToEpoch.nowNs() <= cap.endNs) await sleep(5);
  return { cap, t0Ms };
}

async function exportTo(rx: OtlpReceiver, cap: SyntheticCapture, protocol: OtlpProtocol, extra = {}) {
  const before = rx.spans.length;
  const warnings: string[] = [];
  const sink = createOtelSink({ endpoint: rx.url, protocol, metrics: false, warn: (l) => warnings.push(l), ...extra });
  for (const r of cap.records) sink.write(r);
  await sink.close();
  const t1Ms = performance.timeOrigin + performance.now();
  return { spans: rx.spans.slice(before), stats: sink.stats(), warnings, t1Ms };
}

const isIoctlSpan = (s: ReceivedSpan) => typeof s.attributes['kvm.ioctl.name'] === 'string';
const key = (tid: number, startNs: bigint | number) => `${tid}@${startNs}`;

describe('span export', () => {
  let rx: OtlpReceiver;
  beforeAll(async () => {
    rx = await startOtlpReceiver();
  });
  afterAll(async () => {
    await rx.close();
  });

  it.each<OtlpProtocol>(['http/protobuf', 'http/json'])('%s: tree, attributes, timestamps, counts', async (protocol) => {
    const { cap, t0Ms } = await timedCapture();
    const clock = readClockPair();
    const { spans, stats, warnings, t1Ms } = await exportTo(rx, cap, protocol, { clock });
    expect(rx.errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(spans.every((s) => s.encoding === (protocol === 'http/json' ? 'json' : 'protobuf'))).toBe(true);
    expect(spans.length).toBe(stats.spans);
    expect(stats).toMatchObject({ dropped: 0, exported: spans.length, exportErrors: 0, aggregatedRuns: cap.runs.length, sampledOutRuns: 0 });

    // Resource and scope.
    for (const s of spans) {
      expect(s.resource['service.name']).toBe('kvm-trace');
      expect(s.scope).toBe('kvm-trace');
    }

    // Tree: one VM trace (root kvm.vm → kvm.vcpu → ioctls) and one process trace for system ioctls.
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const vms = spans.filter((s) => s.name === 'kvm.vm');
    expect(vms).toHaveLength(1);
    const vm = vms[0];
    expect(vm.parentSpanId).toBeUndefined();
    expect(vm.attributes).toMatchObject({ 'process.pid': cap.pid, 'kvm.vm': 0, 'kvm.vm.fd': 4, 'process.executable.name': 'kvm-ref-guest' });
    const procs = spans.filter((s) => s.name === 'kvm.process');
    expect(procs).toHaveLength(1);
    expect(procs[0].parentSpanId).toBeUndefined();
    expect(procs[0].traceId).not.toBe(vm.traceId);
    expect(vm.links).toEqual([{ traceId: procs[0].traceId, spanId: procs[0].spanId }]);

    const vcpus = spans.filter((s) => s.name === 'kvm.vcpu');
    expect(vcpus.map((v) => v.attributes['kvm.vcpu']).sort()).toEqual([0, 1]);
    for (const v of vcpus) {
      expect(v.parentSpanId).toBe(vm.spanId);
      expect(v.traceId).toBe(vm.traceId);
      const id = v.attributes['kvm.vcpu'] as number;
      expect(v.attributes['kvm.run.user_addr']).toBe(`0x7f12340${id}0000`);
      expect(v.attributes['kvm.run.kernel_addr']).toBe(`0xffff88810${id}a4c000`);
      expect(v.attributes['kvm.end']).toBe('close');
    }
    const vcpuSpan = (id: number) => vcpus.find((v) => v.attributes['kvm.vcpu'] === id)!;

    // One span per non-RUN ioctl, each equal to its record and under the right parent.
    const ioctlSpans = spans.filter((s) => isIoctlSpan(s) && s.name !== 'KVM_RUN');
    expect(ioctlSpans).toHaveLength(cap.nonRunIoctls.length);
    const pair = new MonotonicToEpoch(clock);
    const spanOf = new Map(ioctlSpans.map((s) => [key(s.attributes['thread.id'] as number, s.startNs), s]));
    for (const r of cap.nonRunIoctls) {
      const s = spanOf.get(key(r.tid, pair.epochNs(r.enter_ns)));
      expect(s, `${r.name} of tid ${r.tid}`).toBeDefined();
      expect(s!.name).toBe(r.name);
      expect(s!.endNs).toBe(pair.epochNs(r.ts_ns));
      const want: Record<string, unknown> = {
        'kvm.ioctl.name': r.name,
        'kvm.ioctl.cmd': r.cmd,
        'kvm.ioctl.dir': r.dir,
        'kvm.ioctl.size': r.size,
        'kvm.ioctl.arg': r.arg,
        'kvm.ioctl.ret': r.ret,
        'kvm.ioctl.latency_ns': r.latency_ns,
        'kvm.fd': r.fd,
        'kvm.fd.kind': r.fd_kind,
        'process.pid': r.pid,
        'thread.id': r.tid,
        'thread.name': r.comm,
      };
      if (r.vm !== null) want['kvm.vm'] = r.vm;
      if (r.vcpu !== null) want['kvm.vcpu'] = r.vcpu;
      if (r.errno) want['error.type'] = r.errno;
      if (r.explain) want['kvm.ioctl.explain'] = r.explain;
      if (r.args) want['kvm.ioctl.args'] = JSON.stringify(r.args);
      expect(s!.attributes).toMatchObject(want);
      if (!r.errno) expect(s!.attributes['error.type']).toBeUndefined();
      expect(s!.status.code).toBe(r.errno ? 2 : 0);

      const parent = byId.get(s!.parentSpanId!);
      if (r.fd_kind === 'vcpu') expect(parent).toBe(vcpuSpan(r.vcpu!));
      else if (r.fd_kind === 'vm' || r.name === 'KVM_CREATE_VM') expect(parent).toBe(vm);
      else expect(parent).toBe(procs[0]);
      expect(s!.traceId).toBe(parent!.traceId);

      // Flags become events: misaligned first, then cache-line crossing; clean buffers none.
      const flagged = (r.flags ?? []).filter((f) => f.misaligned || f.cacheline_cross);
      expect(s!.events.map((e) => e.name)).toEqual(
        flagged.map((f) => (f.misaligned ? 'kvm.buffer.misaligned' : 'kvm.buffer.cacheline_cross')),
      );
      for (const [i, f] of flagged.entries()) {
        expect(s!.events[i].attributes).toMatchObject({
          'kvm.buffer.what': f.what,
          'kvm.buffer.addr': f.addr,
          'kvm.buffer.len': f.len,
          'kvm.buffer.misaligned': f.misaligned,
          'kvm.buffer.cacheline_cross': f.cacheline_cross,
        });
      }
    }
    expect(spans.some((s) => s.events.some((e) => e.name === 'kvm.buffer.misaligned'))).toBe(true);
    expect(spans.some((s) => s.events.some((e) => e.name === 'kvm.buffer.cacheline_cross'))).toBe(true);

    // KVM_RUN: aggregate spans under their vCPU whose counts add up to the records.
    const runSpans = spans.filter((s) => s.name === 'KVM_RUN');
    expect(runSpans.length).toBeGreaterThan(0);
    for (const s of runSpans) {
      expect(s.attributes['kvm.run.aggregated']).toBe(true);
      expect(s.parentSpanId).toBe(vcpuSpan(s.attributes['kvm.vcpu'] as number).spanId);
    }
    for (const id of [0, 1]) {
      const recs = cap.runs.filter((r) => r.vcpu === id);
      const mine = runSpans.filter((s) => s.attributes['kvm.vcpu'] === id);
      const sum = (k: string) => mine.reduce((a, s) => a + ((s.attributes[k] as number) ?? 0), 0);
      expect(sum('kvm.run.count')).toBe(recs.length);
      expect(sum('kvm.run.errors')).toBe(recs.filter((r) => r.errno).length);
      expect(sum('kvm.run.latency_sum_ns')).toBe(recs.reduce((a, r) => a + r.latency_ns, 0));
      for (const [reason, n] of cap.exits.get(id)!) expect(sum(`kvm.run.exits.${reason}`)).toBe(n);
      expect(Math.min(...mine.map((s) => s.attributes['kvm.run.latency_min_ns'] as number))).toBe(Math.min(...recs.map((r) => r.latency_ns)));
      expect(Math.max(...mine.map((s) => s.attributes['kvm.run.latency_max_ns'] as number))).toBe(Math.max(...recs.map((r) => r.latency_ns)));
    }
    expect(runSpans.find((s) => s.attributes['kvm.vcpu'] === 1)!.attributes['kvm.run.errnos.EINTR']).toBe(1);

    // Every timestamp lies in the wall-clock window of the run (2 ms slack: Date/performance rounding).
    const lo = BigInt(Math.floor((t0Ms - 2) * 1e6));
    const hi = BigInt(Math.ceil((t1Ms + 2) * 1e6));
    for (const s of spans) {
      expect(s.startNs >= lo && s.startNs <= hi, `${s.name} start`).toBe(true);
      expect(s.endNs >= s.startNs && s.endNs <= hi, `${s.name} end`).toBe(true);
      for (const e of s.events) expect(e.timeNs >= lo && e.timeNs <= hi).toBe(true);
    }
  });

  it('sample mode: runs 1, 1+N, … of each vCPU and every failed run get a span; the rest are counted', async () => {
    const { cap } = await timedCapture(2, 350);
    const { spans, stats } = await exportTo(rx, cap, 'http/protobuf', { runSpans: { mode: 'sample', sampleEvery: 100 } });
    const runSpans = spans.filter((s) => s.name === 'KVM_RUN');
    // vCPU 0: runs 1, 101, 201, 301; vCPU 1: the same four plus its EINTR run (number 176).
    expect(runSpans.filter((s) => s.attributes['kvm.vcpu'] === 0).map((s) => s.attributes['kvm.run.seq'])).toEqual([1, 101, 201, 301]);
    expect(runSpans.filter((s) => s.attributes['kvm.vcpu'] === 1).map((s) => s.attributes['kvm.run.seq'])).toEqual([1, 101, 176, 201, 301]);
    const eintr = runSpans.find((s) => s.attributes['error.type'] === 'EINTR')!;
    expect(eintr.status.code).toBe(2);
    const io = runSpans.find((s) => s.attributes['kvm.exit.reason'] === 'IO')!;
    expect(io.attributes).toMatchObject({ 'kvm.exit.code': 2, 'kvm.exit.port': 0x3f8, 'kvm.exit.size': 1, 'kvm.exit.direction': 'out', 'kvm.run.sample_every': 100 });
    expect(stats.sampledOutRuns).toBe(cap.runs.length - runSpans.length);
    expect(stats.aggregatedRuns).toBe(0);
    expect(spans.filter((s) => isIoctlSpan(s) && s.name !== 'KVM_RUN')).toHaveLength(cap.nonRunIoctls.length);
  });

  it('all mode: one span per KVM_RUN, each with its exit', async () => {
    const { cap } = await timedCapture(2, 200);
    const { spans, stats } = await exportTo(rx, cap, 'http/json', { runSpans: { mode: 'all' } });
    const runSpans = spans.filter((s) => s.name === 'KVM_RUN');
    expect(runSpans).toHaveLength(cap.runs.length);
    expect(stats).toMatchObject({ dropped: 0, sampledOutRuns: 0, aggregatedRuns: 0 });
    const hlt = runSpans.filter((s) => s.attributes['kvm.exit.reason'] === 'HLT');
    expect(hlt).toHaveLength(2);
  });

  it('aggregate windows: consecutive, non-overlapping, and their counts add up', async () => {
    const { cap } = await timedCapture(2, 1500);
    const windowMs = 2;
    const { spans, stats } = await exportTo(rx, cap, 'http/protobuf', { runSpans: { mode: 'aggregate', windowMs } });
    expect(stats.aggregatedRuns).toBe(cap.runs.length);
    for (const id of [0, 1]) {
      const mine = spans
        .filter((s) => s.name === 'KVM_RUN' && s.attributes['kvm.vcpu'] === id)
        .sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
      expect(mine.length).toBeGreaterThan(2);
      expect(mine.reduce((a, s) => a + (s.attributes['kvm.run.count'] as number), 0)).toBe(cap.runs.filter((r) => r.vcpu === id).length);
      for (let i = 1; i < mine.length; i++) expect(mine[i].startNs > mine[i - 1].endNs).toBe(true);
      // A window holds only runs that entered within windowMs of its first run.
      const windowNs = BigInt(windowMs * 1e6);
      for (const s of mine) {
        const lastLatency = BigInt(s.attributes['kvm.run.latency_max_ns'] as number);
        expect(s.endNs - s.startNs <= windowNs + lastLatency).toBe(true);
      }
    }
  });

  it('KVM_CREATE_VM that names its VM index and a VM first seen mid-life both get a VM trace', async () => {
    const startNs = MonotonicToEpoch.nowNs() - 50_000_000;
    const cap = syntheticCapture({ startNs, vcpus: 1, runsPerVcpu: 10, createVmCarriesIndex: true });
    // Attach late: drop everything before the first KVM_SET_REGS (no system probes, no KVM_CREATE_*).
    const from = cap.records.findIndex((r) => r.type === 'ioctl' && r.name === 'KVM_SET_REGS');
    const late = cap.records.slice(from);
    for (const recs of [cap.records, late]) {
      const before = rx.spans.length;
      const stats = await exportRecords(recs, { endpoint: rx.url, metrics: false });
      const spans = rx.spans.slice(before);
      expect(stats.dropped).toBe(0);
      const vm = spans.filter((s) => s.name === 'kvm.vm');
      expect(vm).toHaveLength(1);
      expect(vm[0].attributes['kvm.seen_late']).toBe(recs === late ? true : undefined);
      const vcpu = spans.find((s) => s.name === 'kvm.vcpu')!;
      expect(vcpu.parentSpanId).toBe(vm[0].spanId);
      const regs = spans.find((s) => s.name === 'KVM_SET_REGS')!;
      expect(regs.parentSpanId).toBe(vcpu.spanId);
      // Replay: the VM span ends with its fd's close, not at "now".
      const vmClose = recs.filter((r) => r.type === 'fd' && r.fd_kind === 'vm' && r.op === 'close')[0] as { ts_ns: number };
      expect(vm[0].attributes['kvm.end']).toBe('close');
      expect(Number(vm[0].endNs - vm[0].startNs)).toBeLessThanOrEqual(vmClose.ts_ns - startNs + 1);
    }
  });
});

describe('span lifetimes', () => {
  it('a VM span lasts until its last vCPU ends when the VM fd closes first; a leaked fd ends with kvm.end=leak', async () => {
    const rx = await startOtlpReceiver();
    try {
      const cap = syntheticCapture({ startNs: MonotonicToEpoch.nowNs() - 50_000_000, vcpus: 2, runsPerVcpu: 20 });
      const fds = cap.records.filter((r) => r.type === 'fd' && r.op === 'close');
      const vmClose = fds.find((r) => r.type === 'fd' && r.fd_kind === 'vm')!;
      const vcpuCloses = fds.filter((r) => r.type === 'fd' && r.fd_kind === 'vcpu');
      // Close the VM fd before the vCPU fds, and let the last vCPU fd leak (process exit).
      const rest = cap.records.filter((r) => !fds.includes(r) && r.type !== 'summary');
      const lastVcpuNs = (vcpuCloses[1] as { ts_ns: number }).ts_ns;
      const reordered = [
        ...rest,
        { ...vmClose, ts_ns: (vcpuCloses[0] as { ts_ns: number }).ts_ns - 10 },
        vcpuCloses[0],
        { ...vcpuCloses[1], op: 'leak' as const },
      ];
      const clock = readClockPair();
      await exportRecords(reordered, { endpoint: rx.url, metrics: false, clock });
      const vm = rx.spans.find((s) => s.name === 'kvm.vm')!;
      const pair = new MonotonicToEpoch(clock);
      expect(vm.endNs).toBe(pair.epochNs(lastVcpuNs));
      expect(vm.attributes['kvm.end']).toBe('close');
      const ends = Object.fromEntries(rx.spans.filter((s) => s.name === 'kvm.vcpu').map((s) => [s.attributes['kvm.vcpu'], s.attributes['kvm.end']]));
      const leaked = (vcpuCloses[1] as { vcpu: number }).vcpu;
      expect(ends).toEqual({ [1 - leaked]: 'close', [leaked]: 'leak' });
    } finally {
      await rx.close();
    }
  });
});

describe('decoder corner cases', () => {
  it('a call seen without its entry starts at its exit; a VM seeded from /proc keeps the decoder-assigned index', async () => {
    const rx = await startOtlpReceiver();
    try {
      const cap = syntheticCapture({ startNs: MonotonicToEpoch.nowNs() - 50_000_000, vcpus: 1, runsPerVcpu: 5 });
      // The decoder seeded VM 0 from /proc, so the captured KVM_CREATE_VM makes VM 1: its open record says
      // vm 1 and every later record of that VM too. The first vCPU ioctl lost its entry.
      let first = true;
      const recs = cap.records.map((r) => {
        if (r.type === 'fd' && r.fd_kind !== 'system') return { ...r, vm: 1 };
        if (r.type !== 'ioctl') return r;
        if (r.vm === 0) {
          const out = { ...r, vm: 1 };
          if (first && r.fd_kind === 'vcpu') {
            first = false;
            return { ...out, enter_ns: 0, latency_ns: 0, no_enter: true as const };
          }
          return out;
        }
        return r;
      });
      const clock = readClockPair();
      await exportRecords(recs, { endpoint: rx.url, metrics: false, clock });
      const vms = rx.spans.filter((s) => s.name === 'kvm.vm');
      expect(vms).toHaveLength(1);
      expect(vms[0].attributes['kvm.vm']).toBe(1);
      expect(vms[0].attributes['kvm.seen_late']).toBeUndefined();
      const vcpu = rx.spans.find((s) => s.name === 'kvm.vcpu')!;
      expect(vcpu.parentSpanId).toBe(vms[0].spanId);
      const noEnter = rx.spans.find((s) => s.attributes['kvm.ioctl.no_enter'] === true)!;
      expect(noEnter.startNs).toBe(noEnter.endNs);
      expect(noEnter.attributes['kvm.ioctl.latency_ns']).toBeUndefined();
      expect(noEnter.parentSpanId).toBe(vcpu.spanId);
      const pair = new MonotonicToEpoch(clock);
      expect(noEnter.startNs).toBeGreaterThan(pair.epochNs(cap.records.find((r) => r.type === 'ioctl')!.ts_ns as number));
    } finally {
      await rx.close();
    }
  });
});

describe('delivery accounting', () => {
  it('an unreachable collector: close() stays within the bound, every span is counted as dropped, one warning', async () => {
    const port = await freePort();
    const { cap } = await timedCapture(2, 300);
    const warnings: string[] = [];
    const flushTimeoutMs = 1500;
    const sink = createOtelSink({ endpoint: `http://127.0.0.1:${port}`, flushTimeoutMs, warn: (l) => warnings.push(l) });
    const t0 = performance.now();
    for (const r of cap.records) sink.write(r);
    const writeMs = performance.now() - t0;
    const c0 = performance.now();
    await sink.close();
    const closeMs = performance.now() - c0;
    const s: OtelStats = sink.stats();
    expect(closeMs).toBeLessThan(flushTimeoutMs + 500);
    // write() never waits for the network (generous bound: a loaded 2-core machine).
    expect(writeMs).toBeLessThan(1000);
    expect(s.spans).toBeGreaterThan(cap.nonRunIoctls.length);
    expect(s.exported).toBe(0);
    expect(s.dropped).toBe(s.spans);
    expect(s.exportErrors).toBeGreaterThanOrEqual(1);
    expect(warnings).toHaveLength(1);
    // One line for the unreachable collector, though both spans and metrics failed to reach it.
    expect(warnings[0]).toMatch(/^warning: OTLP export to http:\/\/127\.0\.0\.1:\d+\/v1\/(traces|metrics) failed \(.*ECONNREFUSED.*\); capture continues/);
    expect(warnings[0]).not.toMatch(/\n/);
  });

  it('a collector answering 500: failed batches are dropped and counted', async () => {
    const rx = await startOtlpReceiver({ status: (path) => (path === '/v1/traces' ? 500 : 200) });
    try {
      const { cap } = await timedCapture(1, 50);
      const warnings: string[] = [];
      const sink = createOtelSink({ endpoint: rx.url, metrics: false, warn: (l) => warnings.push(l) });
      for (const r of cap.records) sink.write(r);
      await sink.close();
      const s = sink.stats();
      expect(rx.requests.some((q) => q.path === '/v1/traces' && q.status === 500)).toBe(true);
      expect(s).toMatchObject({ exported: 0, dropped: s.spans });
      expect(s.exportErrors).toBeGreaterThanOrEqual(1);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain('HTTP 500');
    } finally {
      await rx.close();
    }
  });

  it('a full queue drops spans without blocking, and dropped = spans − received', async () => {
    const rx = await startOtlpReceiver();
    try {
      const { cap } = await timedCapture(2, 400);
      const warnings: string[] = [];
      const sink = createOtelSink({
        endpoint: rx.url,
        metrics: false,
        runSpans: { mode: 'all' },
        maxQueue: 64,
        batchSize: 64,
        warn: (l) => warnings.push(l),
      });
      for (const r of cap.records) sink.write(r);
      const live = sink.stats();
      expect(live.dropped).toBeGreaterThan(0);
      await sink.close();
      const s = sink.stats();
      expect(rx.spans.length).toBe(s.exported);
      expect(s.dropped).toBe(s.spans - rx.spans.length);
      expect(s.dropped).toBeGreaterThanOrEqual(live.dropped);
      expect(warnings.filter((w) => w.includes('span queue full'))).toHaveLength(1);
    } finally {
      await rx.close();
    }
  });

  it('one sink per process at a time (NodeSDK registers process-wide providers); after close() the next one works', async () => {
    const rx = await startOtlpReceiver();
    try {
      const first = createOtelSink({ endpoint: rx.url, metrics: false, warn: () => {} });
      expect(() => createOtelSink({ endpoint: rx.url, metrics: false, warn: () => {} })).toThrow(/already open in this process/);
      await first.close();
      const { cap } = await timedCapture(1, 10);
      const stats = await exportRecords(cap.records, { endpoint: rx.url, metrics: false, warn: () => {} });
      expect(stats).toMatchObject({ dropped: 0, exported: stats.spans });
      expect(rx.spans).toHaveLength(stats.spans);
    } finally {
      await rx.close();
    }
  });

  it('write() after close() and records the sink cannot use are ignored without throwing', async () => {
    const rx = await startOtlpReceiver();
    try {
      const sink = createOtelSink({ endpoint: rx.url, metrics: false, warn: () => {} });
      const odd = { type: 'ioctl', name: 'KVM_RUN', pid: 1, tid: 1 } as unknown as IoctlRecord;
      expect(() => sink.write(odd)).not.toThrow();
      expect(() => sink.write({ type: 'copy' } as never)).not.toThrow();
      await sink.close();
      expect(() => sink.write(odd)).not.toThrow();
      await sink.close(); // idempotent
    } finally {
      await rx.close();
    }
  });
});
