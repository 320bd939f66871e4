/**
 * OpenTelemetry on a real capture (issue 5's acceptance): the real BPF capture of the reference guest goes
 * to the JSONL-equivalent record stream and, at the same time, to the OTLP/HTTP exporter pointed at a real
 * node:http receiver and to the Prometheus endpoint. Spans must form the VM → vCPU → ioctl tree, carry
 * the same values as the records, lie within the run's wall-clock window, and number exactly the non-RUN
 * ioctls; a scrape must show ioctl counters equal to the record counts. `demo --otlp` against a closed port
 * finishes normally and reports the dropped spans.
 */
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capture } from '../src/capture/session.js';
import { stopSignal } from '../src/capture/stop-signal.js';
import { runGuest } from '../src/guest/index.js';
import type { IoctlRecord, TraceRecord } from '../src/decode/records.js';
import { createOtelSink } from '../src/export/otel/index.js';
import { MonotonicToEpoch, readClockPair } from '../src/export/otel/clock.js';
import { startOtlpReceiver } from './helpers/otlp-receiver.js';
import { parsePromText, promSum } from './helpers/prom-text.js';
import { bpfSkipReason } from './bpf-support.js';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const skip = bpfSkipReason();
if (skip) console.log(`otel capture tests skipped: ${skip}`);
const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-otel-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(skip !== undefined)('OpenTelemetry export of a real capture', () => {
  it('spans and Prometheus counters equal the captured records', async () => {
    const rx = await startOtlpReceiver();
    const clock = readClockPair();
    const otel = createOtelSink({ endpoint: rx.url, protocol: 'http/protobuf', clock, prometheus: { port: 0 }, warn: () => {} });
    const { prometheusUrl } = await otel.start();
    const records: TraceRecord[] = [];
    const stop = stopSignal();
    const wallStart = BigInt(Math.floor((performance.timeOrigin + performance.now()) * 1e6));
    await capture({
      pids: [process.pid],
      signal: stop.signal,
      // The OTel sink is closed by hand below, after the scrape.
      sinks: [{ write: (r) => void records.push(r), close: async () => {} }, { write: (r) => otel.write(r), close: async () => {} }],
      onAttached: async () => {
        try {
          await runGuest({ scenario: 'mixed', vcpus: 2, exits: 200, probeLongMode: false });
        } finally {
          stop.stop('done');
        }
      },
    });
    stop.dispose();
    const wallEnd = BigInt(Math.floor((performance.timeOrigin + performance.now()) * 1e6));

    const mine = records.filter((r): r is IoctlRecord => r.type === 'ioctl' && r.pid === process.pid);
    // Prometheus: counters equal the record counts, per ioctl name.
    const scrape = parsePromText(await (await fetch(prometheusUrl!)).text());
    const byName = new Map<string, number>();
    for (const r of mine) byName.set(r.name, (byName.get(r.name) ?? 0) + 1);
    for (const [name, n] of byName) expect(promSum(scrape, 'kvm_ioctl_calls_total', { kvm_ioctl_name: name }), name).toBe(n);

    await otel.close();
    expect(otel.stats().dropped).toBe(0);
    expect(rx.errors).toEqual([]);
    const spans = rx.spans;

    // Tree: VM root → vCPU spans → ioctl spans.
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const vms = spans.filter((s) => s.name === 'kvm.vm' && s.attributes['process.pid'] === process.pid);
    expect(vms).toHaveLength(1);
    const vcpus = spans.filter((s) => s.name === 'kvm.vcpu' && s.traceId === vms[0].traceId);
    expect(vcpus.map((v) => v.attributes['kvm.vcpu']).sort()).toEqual([0, 1]);
    for (const v of vcpus) expect(v.parentSpanId).toBe(vms[0].spanId);

    // One span per non-RUN ioctl, with the record's values and the epoch time of its monotonic stamps.
    const pair = new MonotonicToEpoch(clock);
    const nonRun = mine.filter((r) => r.name !== 'KVM_RUN');
    const ioctlSpans = spans.filter((s) => s.attributes['process.pid'] === process.pid && typeof s.attributes['kvm.ioctl.name'] === 'string' && s.name !== 'KVM_RUN');
    expect(ioctlSpans).toHaveLength(nonRun.length);
    const spanOf = new Map(ioctlSpans.map((s) => [`${s.attributes['thread.id']}@${s.startNs}`, s]));
    for (const r of nonRun) {
      const s = spanOf.get(`${r.tid}@${pair.epochNs(r.enter_ns)}`);
      expect(s, `${r.name} of tid ${r.tid}`).toBeDefined();
      expect(s!.attributes).toMatchObject({
        'kvm.ioctl.name': r.name,
        'kvm.ioctl.cmd': r.cmd,
        'kvm.ioctl.arg': r.arg,
        'kvm.ioctl.ret': r.ret,
        'kvm.fd': r.fd,
        'kvm.fd.kind': r.fd_kind,
        'thread.id': r.tid,
      });
      expect(s!.endNs).toBe(pair.epochNs(r.ts_ns));
      expect(s!.startNs >= wallStart && s!.endNs <= wallEnd).toBe(true);
      const parent = byId.get(s!.parentSpanId ?? '');
      if (r.fd_kind === 'vcpu') expect(parent?.name).toBe('kvm.vcpu');
      if (r.fd_kind === 'vm') expect(parent?.name).toBe('kvm.vm');
    }
    // KVM_RUN spans are aggregated (the default rule): every run is counted in one.
    const runSpans = spans.filter((s) => s.name === 'KVM_RUN' && s.attributes['process.pid'] === process.pid);
    const counted = runSpans.reduce((n, s) => n + Number(s.attributes['kvm.run.count'] ?? 0), 0);
    expect(counted).toBe(mine.filter((r) => r.name === 'KVM_RUN').length);
    await rx.close();
  });

  it('demo --otlp against a closed port finishes normally and reports the dropped spans', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    await new Promise((r) => srv.close(r));
    const r = spawnSync(
      process.execPath,
      [cli, 'demo', '--json', '--exits', '100', '--out', dir, '--otlp', `http://127.0.0.1:${port}`, '--otlp-flush-timeout', '1500'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status).toBe(0);
    const d = JSON.parse(r.stdout) as { perfect: boolean; otel: { spans: number; dropped: number; exported: number } };
    expect(d.perfect).toBe(true);
    expect(d.otel.spans).toBeGreaterThan(100);
    expect(d.otel.exported).toBe(0);
    expect(d.otel.dropped).toBe(d.otel.spans);
    expect(r.stderr).toMatch(/otlp|collector|export/i);
  });
});
