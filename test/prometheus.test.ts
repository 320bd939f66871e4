/**
 * The Prometheus scrape endpoint: a real HTTP scrape after a record stream shows counters equal to the
 * record counts; it binds 127.0.0.1 by default, port 0 picks a free port, a busy port is one clear error,
 * and close() frees the port.
 */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { MonotonicToEpoch } from '../src/export/otel/clock.js';
import { openOtelSink } from '../src/export/otel/sink.js';
import { syntheticCapture } from './helpers/otel-records.js';
import { parsePromText, promSum } from './helpers/prom-text.js';

describe('Prometheus endpoint', () => {
  it('a scrape shows counters equal to the record counts', async () => {
    const cap = syntheticCapture({ startNs: MonotonicToEpoch.nowNs() - 100_000_000, vcpus: 2, runsPerVcpu: 300 });
    const sink = await openOtelSink({ prometheus: { port: 0 } });
    try {
      const { prometheusUrl } = await sink.start();
      expect(prometheusUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      expect(sink.config.tracesUrl).toBeUndefined();
      for (const r of cap.records) sink.write(r);
      const res = await fetch(prometheusUrl!);
      expect(res.status).toBe(200);
      const samples = parsePromText(await res.text());

      // ioctls by name and errno
      expect(promSum(samples, 'kvm_ioctl_calls_total')).toBe(cap.ioctls.length);
      const names = new Set(cap.ioctls.map((r) => r.name));
      for (const name of names) {
        const recs = cap.ioctls.filter((r) => r.name === name);
        expect(promSum(samples, 'kvm_ioctl_calls_total', { kvm_ioctl_name: name }), name).toBe(recs.length);
        // error.type = the errno name on failures; successes have no error_type label (PromQL reads it as "").
        for (const errno of new Set(recs.map((r) => r.errno ?? ''))) {
          const n = samples
            .filter((x) => x.name === 'kvm_ioctl_calls_total' && x.labels.kvm_ioctl_name === name && (x.labels.error_type ?? '') === errno)
            .reduce((a, x) => a + x.value, 0);
          expect(n, `${name} ${errno}`).toBe(recs.filter((r) => (r.errno ?? '') === errno).length);
        }
        // latency histogram: one observation per ioctl, sum in seconds
        expect(promSum(samples, 'kvm_ioctl_duration_seconds_count', { kvm_ioctl_name: name })).toBe(recs.length);
        expect(promSum(samples, 'kvm_ioctl_duration_seconds_sum', { kvm_ioctl_name: name })).toBeCloseTo(
          recs.reduce((a, r) => a + r.latency_ns, 0) / 1e9,
          9,
        );
        expect(promSum(samples, 'kvm_ioctl_duration_seconds_bucket', { kvm_ioctl_name: name, le: '+Inf' })).toBe(recs.length);
      }
      expect(promSum(samples, 'kvm_ioctl_calls_total', { error_type: 'EINTR' })).toBe(1);

      // exits by reason and vCPU
      for (const [vcpu, reasons] of cap.exits) {
        for (const [reason, n] of reasons) {
          expect(promSum(samples, 'kvm_exits_total', { kvm_vcpu: String(vcpu), kvm_exit_reason: reason, process_pid: String(cap.pid) })).toBe(n);
        }
      }
      // flags by ioctl, lost records
      const flags = cap.ioctls.flatMap((r) => (r.flags ?? []).map((f) => ({ name: r.name, f })));
      expect(promSum(samples, 'kvm_buffer_flags_total', { kvm_buffer_flag: 'misaligned' })).toBe(flags.filter((x) => x.f.misaligned).length);
      expect(promSum(samples, 'kvm_buffer_flags_total', { kvm_buffer_flag: 'cacheline_cross', kvm_ioctl_name: 'KVM_SET_REGS' })).toBe(
        flags.filter((x) => x.f.cacheline_cross && x.name === 'KVM_SET_REGS').length,
      );
      expect(promSum(samples, 'kvm_records_lost_total')).toBe(cap.lost);
      // Decode errors and ring resyncs come with the summary (the last record): written now, so counted.
      expect(promSum(samples, 'kvm_records_decode_errors_total')).toBe(cap.decodeErrors);
      expect(promSum(samples, 'kvm_ring_resyncs_total')).toBe(cap.ringResyncs);
      expect(samples.some((s) => s.name === 'kvm_trace_spans_dropped_total')).toBe(true);
    } finally {
      await sink.close();
    }
  });

  it('a busy port is one clear error, and close() frees the port', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as { port: number }).port;
    await expect(openOtelSink({ prometheus: { port } })).rejects.toThrow(
      new RegExp(`^cannot serve Prometheus metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`),
    );
    await new Promise((r) => busy.close(r));
    // The failed open released everything: a sink can bind the port now, and its close() frees it again.
    const sink = await openOtelSink({ prometheus: { port } });
    const url = (await sink.start()).prometheusUrl!;
    expect(new URL(url).port).toBe(String(port));
    expect((await fetch(url)).status).toBe(200);
    await sink.close();
    await expect(fetch(url)).rejects.toThrow();
    const srv = createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((r) => srv.close(r));
  });

  it('other paths are 404 and the endpoint answers only on the loopback address', async () => {
    const sink = await openOtelSink({ prometheus: { port: 0 } });
    try {
      const url = new URL((await sink.start()).prometheusUrl!);
      expect(url.hostname).toBe('127.0.0.1');
      const res = await fetch(new URL('/', url));
      expect(res.status).toBe(404);
    } finally {
      await sink.close();
    }
  });
});
