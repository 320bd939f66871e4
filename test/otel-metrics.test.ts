/**
 * Metrics over OTLP/HTTP to a real receiver (protobuf and JSON): the exported counters and histograms equal
 * the record counts, and the standard environment variables route, name, authorize and compress the export.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MonotonicToEpoch } from '../src/export/otel/clock.js';
import type { OtlpProtocol } from '../src/export/otel/options.js';
import { exportRecords } from '../src/export/otel/sink.js';
import { withEnv } from './helpers/env.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedMetric } from './helpers/otlp-receiver.js';
import { syntheticCapture } from './helpers/otel-records.js';

function total(m: ReceivedMetric | undefined, match: Record<string, unknown> = {}): number {
  expect(m, 'metric present').toBeDefined();
  return m!.points
    .filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce((a, p) => a + (p.value ?? p.count ?? 0), 0);
}

describe('OTLP metrics', () => {
  let rx: OtlpReceiver;
  beforeAll(async () => {
    rx = await startOtlpReceiver();
  });
  afterAll(async () => {
    await rx.close();
  });

  it.each<OtlpProtocol>(['http/protobuf', 'http/json'])('%s: counters and histograms equal the records', async (protocol) => {
    rx.metrics.length = 0;
    const cap = syntheticCapture({ startNs: MonotonicToEpoch.nowNs() - 100_000_000, vcpus: 2, runsPerVcpu: 200 });
    const stats = await exportRecords(cap.records, { endpoint: rx.url, protocol });
    expect(rx.errors).toEqual([]);
    const metricReqs = rx.requests.filter((q) => q.path === '/v1/metrics' && q.encoding === (protocol === 'http/json' ? 'json' : 'protobuf'));
    expect(metricReqs.length).toBeGreaterThan(0);
    const m = rx.latestMetrics();

    const calls = m.get('kvm.ioctl.calls');
    expect(calls).toMatchObject({ kind: 'sum', monotonic: true, unit: '{call}' });
    expect(total(calls)).toBe(cap.ioctls.length);
    for (const name of new Set(cap.ioctls.map((r) => r.name))) {
      expect(total(calls, { 'kvm.ioctl.name': name })).toBe(cap.ioctls.filter((r) => r.name === name).length);
    }
    expect(total(calls, { 'kvm.ioctl.name': 'KVM_SET_USER_MEMORY_REGION', 'error.type': 'EINVAL', 'kvm.fd.kind': 'vm' })).toBe(1);
    // Successes carry no error.type (the semantic conventions' rule).
    expect(total(calls, { 'kvm.ioctl.name': 'KVM_SET_USER_MEMORY_REGION' }) - 1).toBe(
      calls!.points.filter((p) => p.attributes['kvm.ioctl.name'] === 'KVM_SET_USER_MEMORY_REGION' && !('error.type' in p.attributes)).reduce((a, p) => a + (p.value ?? 0), 0),
    );

    const dur = m.get('kvm.ioctl.duration.seconds');
    expect(dur).toMatchObject({ kind: 'histogram', unit: 's' });
    const runDur = dur!.points.find((p) => p.attributes['kvm.ioctl.name'] === 'KVM_RUN')!;
    expect(runDur.count).toBe(cap.runs.length);
    expect(runDur.sum).toBeCloseTo(cap.runs.reduce((a, r) => a + r.latency_ns, 0) / 1e9, 9);
    expect(runDur.bounds![0]).toBe(1e-6);
    expect(runDur.bucketCounts!.reduce((a, b) => a + b, 0)).toBe(cap.runs.length);

    const exits = m.get('kvm.exits');
    for (const [vcpu, reasons] of cap.exits) {
      for (const [reason, n] of reasons) {
        expect(total(exits, { 'kvm.vcpu': vcpu, 'kvm.exit.reason': reason, 'process.pid': cap.pid, 'kvm.vm': 0 })).toBe(n);
      }
    }
    expect(total(m.get('kvm.buffer.flags'), { 'kvm.buffer.flag': 'misaligned', 'kvm.ioctl.name': 'KVM_SET_SREGS' })).toBe(1);
    expect(total(m.get('kvm.records.lost'))).toBe(cap.lost);
    expect(m.get('kvm.records.decode_errors')).toMatchObject({ kind: 'sum', monotonic: true, unit: '{record}' });
    expect(total(m.get('kvm.records.decode_errors'))).toBe(cap.decodeErrors);
    expect(m.get('kvm.ring.resyncs')).toMatchObject({ kind: 'sum', monotonic: true, unit: '{resync}' });
    expect(total(m.get('kvm.ring.resyncs'))).toBe(cap.ringResyncs);
    expect(total(m.get('kvm.trace.runs.aggregated'))).toBe(cap.runs.length);
    expect(total(m.get('kvm.trace.spans.dropped'))).toBe(stats.dropped);
    for (const metric of m.values()) expect(metric.resource['service.name']).toBe('kvm-trace');
  });

  it('OTEL_EXPORTER_OTLP_* and OTEL_SERVICE_NAME route and name the export; explicit options win', async () => {
    const other = await startOtlpReceiver();
    try {
      const cap = syntheticCapture({ startNs: MonotonicToEpoch.nowNs() - 100_000_000, vcpus: 1, runsPerVcpu: 10 });
      const env = {
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${rx.url}/v1/traces`,
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${other.url}/v1/metrics`,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_SERVICE_NAME: 'vmm-host-7',
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer abc',
        OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
      };
      const spansBefore = rx.spans.length;
      await withEnv(env, () => exportRecords(cap.records));
      const spans = rx.spans.slice(spansBefore);
      expect(spans.length).toBeGreaterThan(0);
      expect(spans.every((s) => s.encoding === 'json' && s.resource['service.name'] === 'vmm-host-7')).toBe(true);
      expect(other.metrics.length).toBeGreaterThan(0);
      expect(other.spans).toHaveLength(0);
      expect(other.metrics.every((x) => x.resource['service.name'] === 'vmm-host-7')).toBe(true);
      // Headers and compression come from the environment too (read by the exporters themselves).
      for (const q of [...rx.requests.slice(-1), ...other.requests]) {
        expect(q.headers.authorization).toBe('Bearer abc');
        expect(q.headers['content-encoding']).toBe('gzip');
      }

      // --otlp and --service-name beat the environment.
      const before = other.spans.length;
      await withEnv(env, () => exportRecords(cap.records, { endpoint: other.url, serviceName: 'explicit', protocol: 'http/protobuf' }));
      const got = other.spans.slice(before);
      expect(got.length).toBeGreaterThan(0);
      expect(got.every((s) => s.encoding === 'protobuf' && s.resource['service.name'] === 'explicit')).toBe(true);
    } finally {
      await other.close();
    }
  });
});
