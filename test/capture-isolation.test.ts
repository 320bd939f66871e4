// No record kills a capture (issue 10's acceptance): mid-capture, malformed records are written into the
// capture's REAL kernel ring by a real BPF program (scripts/lib/ring-producer.ts's RingRecordInjector run
// with BPF_PROG_TEST_RUN): records too short for a header, of an unknown type, an ioctl record whose
// data lengths run past its end, a truncated fd record, and a well-formed record on which a sink throws.
// The capture goes on, the guest run after them decodes in full, and decode_errors equals what was injected
// — in the summary, and in the OpenTelemetry export of the same capture (OTLP metrics to a real receiver and
// a scrape of the Prometheus endpoint taken while the capture runs and one after the summary).
import { describe, expect, it } from 'vitest';
import { capture } from '../src/capture/session.js';
import { stopSignal } from '../src/capture/stop-signal.js';
import { FD, HDR, IOCTL, KT_FD_CLOSE, KT_FD_VCPU } from '../src/bpf/event-layout.js';
import type { IoctlRecord, TraceRecord } from '../src/decode/records.js';
import type { RecordSink } from '../src/decode/sink.js';
import { BPF_MAP_TYPE_RINGBUF, bpfClose, bpfMapFdById, bpfMapInfo } from '../scripts/lib/bpf-syscall.js';
import { RingRecordInjector } from '../scripts/lib/ring-producer.js';
import { encodeFd, encodeIoctl } from './helpers/kt-records.js';
import { bpfSkipReason, runPioGuest } from './bpf-support.js';
import { createOtelSink } from '../src/export/otel/sink.js';
import { startOtlpReceiver } from './helpers/otlp-receiver.js';
import { parsePromText, promSum } from './helpers/prom-text.js';
import { cmdOf } from './decode-helpers.js';

const skip = bpfSkipReason();
if (skip) console.log(`capture isolation tests skipped: ${skip}`);

/** An fd of the capture's ring (the "events" ring-buffer map among its map ids). */
function ringFdOf(mapIds: number[]): number {
  for (const id of mapIds) {
    const fd = bpfMapFdById(id);
    const info = bpfMapInfo(fd);
    if (info.type === BPF_MAP_TYPE_RINGBUF && info.name === 'events') return fd;
    bpfClose(fd);
  }
  throw new Error('no "events" ring buffer among the capture maps');
}

/** The fd the poison record names: a sink throws on any record with it. */
const POISON_FD = 0x7badf00d;

const poisonRecord = (): Uint8Array =>
  encodeIoctl({ ts_ns: 10, enter_ns: 5, pid: process.pid, fd: POISON_FD, cmd: cmdOf('KVM_GET_API_VERSION'), ret: 12 });

/** What gets injected, and how each bad record is counted. */
function malformed(): Array<{ what: string; bytes: Uint8Array; cause: 'short' | 'unknown_type' | 'threw' }> {
  const unknown = new Uint8Array(40);
  new DataView(unknown.buffer).setUint16(HDR.type, 99, true);
  const overlong = encodeIoctl({ ts_ns: 10, pid: process.pid, fd: 3, cmd: cmdOf('KVM_RUN'), out: new Uint8Array(64) });
  const fd = encodeFd({ ts_ns: 10, pid: process.pid, fd: 5, op: KT_FD_CLOSE, kind: KT_FD_VCPU });
  return [
    { what: 'empty record', bytes: new Uint8Array(0), cause: 'short' },
    { what: 'shorter than a header', bytes: new Uint8Array(HDR.size - 1).fill(0xff), cause: 'short' },
    { what: 'unknown type', bytes: unknown, cause: 'unknown_type' },
    { what: 'ioctl data past its end', bytes: overlong.subarray(0, IOCTL.data + 10), cause: 'short' },
    { what: 'truncated fd record', bytes: fd.subarray(0, FD.size - 1), cause: 'short' },
    { what: 'a sink throws on it', bytes: poisonRecord(), cause: 'threw' },
  ];
}

describe.skipIf(skip !== undefined)('a capture survives bad records in its real ring', () => {
  it('skips and counts each injected record, logs the first ones with a hex dump, and decodes what follows', async () => {
    const records: TraceRecord[] = [];
    const collect: RecordSink = { write: (r) => void records.push(r), close: async () => {} };
    const poisoned: RecordSink = {
      write: (r) => {
        if (r.type === 'ioctl' && r.fd === POISON_FD) throw new Error('sink cannot format this record');
      },
      close: async () => {},
    };
    const rx = await startOtlpReceiver();
    const otel = createOtelSink({ endpoint: rx.url, protocol: 'http/protobuf', prometheus: { port: 0 }, warn: () => {} });
    const { prometheusUrl } = await otel.start();
    // Closed by hand below, after the scrape (capture closes its sinks right after the summary).
    const otelSink: RecordSink = { write: (r) => otel.write(r), health: (h) => otel.health?.(h), close: async () => {} };
    const logs: string[] = [];
    const bad = malformed();
    const times = 3; // three rounds of every bad record: 18 in all
    const stop = stopSignal();
    let before: ReturnType<typeof runPioGuest> | undefined;
    let after: ReturnType<typeof runPioGuest> | undefined;
    let injectedAt = 0;
    let liveDecodeErrors = -1;
    const cap = await capture({
      pids: [process.pid],
      signal: stop.signal,
      sinks: [collect, poisoned, otelSink],
      drainIntervalMs: 10,
      log: (l) => logs.push(l),
      onAttached: async (info) => {
        try {
          before = runPioGuest();
          await new Promise((r) => setTimeout(r, 50)); // drained: the capture is running
          const ringFd = ringFdOf(info.ids.maps);
          const inj = new RingRecordInjector(ringFd);
          try {
            injectedAt = records.length;
            for (let round = 0; round < times; round++) for (const b of bad) inj.inject(b.bytes);
          } finally {
            inj.close();
            bpfClose(ringFd);
          }
          await new Promise((r) => setTimeout(r, 50));
          after = runPioGuest();
          await new Promise((r) => setTimeout(r, 50));
          // Live, before any summary: the capture hands its running counts to the sinks every second.
          const deadline = Date.now() + 5_000;
          for (;;) {
            const live = parsePromText(await (await fetch(prometheusUrl!)).text());
            liveDecodeErrors = promSum(live, 'kvm_records_decode_errors_total');
            if (liveDecodeErrors >= bad.length * times || Date.now() > deadline) break;
            await new Promise((r) => setTimeout(r, 200));
          }
        } finally {
          stop.stop('done');
        }
      },
    });
    stop.dispose();

    const s = cap.summary;
    expect(s.error).toBeUndefined();
    expect(s.decode_errors).toBe(bad.length * times);
    const causes = { short: 0, unknown_type: 0, threw: 0 };
    for (const b of bad) causes[b.cause] += times;
    expect(s.decode_error_causes).toEqual(causes);
    expect(s.lost).toBe(0);
    expect(s.ring_resyncs).toBe(0);

    // The first five are logged: cause, type and a hex dump of their bytes.
    expect(logs.filter((l) => l.startsWith('decode error #')).length).toBe(5);
    expect(logs).toContain('decode error #1: short record, type -1 (unknown), 0 bytes: shorter than the 24-byte record header');
    expect(logs.some((l) => /^decode error #\d: unknown_type record, type 99 \(unknown\), 40 bytes/.test(l))).toBe(true);
    expect(logs.some((l) => /^ {2}0000: 63 00 00 00 /.test(l))).toBe(true);

    // Good records on both sides of the bad ones: both guest runs decode in full.
    const mine = (from: number, to: number): IoctlRecord[] =>
      records.slice(from, to).filter((r): r is IoctlRecord => r.type === 'ioctl' && r.pid === process.pid && r.fd !== POISON_FD);
    const exitsOf = (rs: IoctlRecord[]) => rs.filter((r) => r.name === 'KVM_RUN').map((r) => r.exit?.reason);
    expect(exitsOf(mine(0, injectedAt))).toEqual(['IO', 'HLT']);
    expect(exitsOf(mine(injectedAt, records.length))).toEqual(['IO', 'HLT']);
    expect(before!.exits).toEqual([2, 5]);
    expect(after!.exits).toEqual([2, 5]);
    // The poison record reached the sink before the throwing one (sinks are isolated from each other).
    expect(records.filter((r) => r.type === 'ioctl' && r.fd === POISON_FD).length).toBe(times);
    expect(records.at(-1)?.type).toBe('summary');

    // The same counts as metrics: a scrape while the capture ran, one after the summary, and the OTLP export at close.
    expect(liveDecodeErrors).toBe(bad.length * times);
    const scrape = parsePromText(await (await fetch(prometheusUrl!)).text());
    expect(promSum(scrape, 'kvm_records_decode_errors_total')).toBe(bad.length * times);
    expect(promSum(scrape, 'kvm_ring_resyncs_total')).toBe(0);
    expect(scrape.some((x) => x.name === 'kvm_ring_resyncs_total')).toBe(true);
    await otel.close();
    await rx.close();
    expect(rx.errors).toEqual([]);
    const m = rx.latestMetrics();
    expect(m.get('kvm.records.decode_errors')?.points.map((p) => p.value)).toEqual([bad.length * times]);
    expect(m.get('kvm.ring.resyncs')?.points.map((p) => p.value)).toEqual([0]);
  });
});
