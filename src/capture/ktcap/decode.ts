/**
 * Offline decoding of a binary capture (`kvm-trace decode FILE`, and `report FILE` on one): the raw
 * records go through the same RecordPath as a live capture — the capture's own BTF, its /proc seeds, its
 * cache line size and lean choice, lost marks where the live run noticed them, and its END facts for the
 * summary — so the records equal those a live `attach -o` of the same run wrote, record for record
 * (test/ktcap.test.ts runs both at once and compares).
 */
import { Btf } from '../../btf/index.js';
import type { SummaryRecord } from '../../decode/records.js';
import type { RecordSink } from '../../decode/sink.js';
import { RecordPath } from '../record-path.js';
import { layoutFingerprint, type CaptureMeta } from './format.js';
import { CaptureFileError, CaptureReader } from './reader.js';

export interface DecodeCaptureOptions {
  sinks: RecordSink[];
  /** Decode without argument details (default: as the capture was taken). */
  lean?: boolean;
  /** Cache line size for the flags (default: the capturing machine's). */
  lineSize?: number;
}

export interface DecodedCapture {
  summary: SummaryRecord;
  meta: CaptureMeta;
  /** Raw records read. */
  records: number;
  /** False when the file has no END (the tracer was killed): the summary's facts are then unknown. */
  complete: boolean;
}

export async function decodeCapture(file: string, opts: DecodeCaptureOptions): Promise<DecodedCapture> {
  const reader = CaptureReader.open(file);
  try {
    const meta = reader.meta;
    if (meta.layout !== layoutFingerprint()) {
      throw new CaptureFileError(file, `written by kvm-trace ${meta.version} with another record layout than this kvm-trace decodes`);
    }
    const vmlinux = Btf.fromRaw(reader.btf, undefined, `${file}: vmlinux BTF`);
    const path = new RecordPath({
      btf: reader.kvmBtf ? Btf.fromRaw(reader.kvmBtf, vmlinux, `${file}: vmlinux + kvm BTF`) : vmlinux,
      sinks: opts.sinks,
      lean: opts.lean ?? meta.options.lean,
      lineSize: opts.lineSize ?? meta.line_size,
    });
    if (meta.hooks) path.setHooks(meta.hooks);
    path.seed(reader.seeds);
    let records = 0;
    let summary: SummaryRecord | undefined;
    try {
      records = reader.forEachFrame(path.onRecord, (count) => path.deliverSafely({ type: 'lost', count }));
      path.finish();
      const end = reader.end;
      summary = path.buildSummary({
        strategy: end?.strategy ?? meta.strategy,
        lost: end?.lost ?? 0,
        duration_s: end?.duration_s ?? 0,
        ringRejected: end?.ring_rejected ?? 0,
        noEnter: end?.no_enter ?? 0,
        stateUnavailable: end?.state_unavailable ?? 0,
        attachMs: end?.attach_ms ?? null,
        ...(end ? (end.error !== undefined ? { error: end.error } : {}) : { error: 'the capture has no end (the tracer was killed?): counts are from the records it holds' }),
      });
    } finally {
      // The sinks get what was decoded even when the file turned out damaged half way.
      if (summary) await path.close(summary);
      else await Promise.allSettled(opts.sinks.map((s) => s.close()));
    }
    return { summary, meta, records, complete: reader.end !== null };
  } finally {
    reader.close();
  }
}
