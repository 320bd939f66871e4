/**
 * Throughput of the user-space pipeline stages, measured in this process on real data:
 *  - ring-buffer drain: a real BPF ring buffer (scripts/lib/ring-producer.ts fills it in the kernel with
 *    BPF_PROG_TEST_RUN), drained through the zero-copy mmap reader (src/ringbuf/reader.ts), timed for the
 *    drain only;
 *  - decoder: records per second turning a recorded raw byte stream (record-raw.ts) into JSONL records
 *    (src/decode).
 * The modules are loaded from dist/ at run time: a stage whose module is not built yet is reported as
 * "n/a (module missing)" instead of failing the benchmark.
 */
import { existsSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { distPath } from './paths.js';

export interface Throughput {
  records_per_s: number | null;
  records: number;
  seconds: number;
  /** What exactly was measured, or why nothing was. */
  note: string;
}

async function loadDist(rel: string): Promise<Record<string, unknown> | null> {
  const path = distPath(rel);
  if (!existsSync(path)) return null;
  return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
}

function na(note: string): Throughput {
  return { records_per_s: null, records: 0, seconds: 0, note };
}

interface Reader {
  drain(h: (view: DataView, off: number, len: number) => void, max?: number): { records: number };
  close(): void;
}
interface Producer {
  ringFd: number;
  produce(n: number): void;
  counters(): { seq: number; fails: number };
  close(): void;
}

/**
 * Fill a real 1 MiB ring (about 32 k records) in the kernel and drain it; repeat until `minSeconds` of drain
 * time or `maxRecords` records (filling costs far more than draining, so the count bounds the run time).
 * The handler reads each record's first word, as a decoder would, so nothing is optimised away.
 */
export async function ringDrainThroughput(minSeconds: number, maxRecords: number): Promise<Throughput> {
  const ring = await loadDist('src/ringbuf/index.js');
  const prod = await loadDist('scripts/lib/ring-producer.js');
  if (!ring || !prod || typeof ring.RawRingReader !== 'function' || typeof prod.TestRingProducer !== 'function') {
    return na('module missing: src/ringbuf reader or scripts/lib/ring-producer not built');
  }
  const size = 1 << 20;
  const Producer = prod.TestRingProducer as new (size: number, o?: { flags?: number }) => Producer;
  const Reader = ring.RawRingReader as new (fd: number, size: number) => Reader;
  const producer = new Producer(size, { flags: 1 /* BPF_RB_NO_WAKEUP: nobody polls here */ });
  let reader: Reader | undefined;
  try {
    reader = new Reader(producer.ringFd, size);
    let records = 0;
    let ms = 0;
    let sink = 0;
    const handler = (view: DataView, off: number): void => {
      sink ^= view.getUint32(off, true);
    };
    // Records are 8..39 bytes (stride 16..48): ≈ 32 k fit in 1 MiB; the surplus runs fail and are counted.
    while (ms < minSeconds * 1000 && records < maxRecords) {
      producer.produce(40_000);
      const t0 = performance.now();
      const step = reader.drain(handler);
      ms += performance.now() - t0;
      records += step.records;
      if (step.records === 0) throw new Error('ring drain: the producer wrote nothing');
    }
    void sink;
    return {
      records_per_s: records / (ms / 1000),
      records,
      seconds: ms / 1000,
      note: 'real BPF ring buffer (BPF_PROG_TEST_RUN producer), mmap reader, 8–39-byte records',
    };
  } finally {
    reader?.close();
    producer.close();
  }
}

interface DecoderLike {
  stats: { events: number; rejected: number; unknownIoctls: number };
}

/**
 * Decoder throughput: records/s turning the recorded raw stream (record-raw.ts) into JSONL records with the
 * real Decoder (default options, full argument decoding) and the module's own stream replay. Each timed pass
 * gets a fresh Decoder (built outside the timer: it compiles its BTF decoders once) so fd tracking starts
 * from the same state; one untimed pass first warms the JIT. A second number adds JSON.stringify of every
 * record, the rest of what `attach -o FILE` does per record.
 */
export async function decoderThroughput(
  recording: { file: string; records: number } | { reason: string },
  minSeconds: number,
  maxRecords: number,
): Promise<Throughput & { with_json_records_per_s: number | null; records_out: number }> {
  const none = (note: string) => ({ ...na(note), with_json_records_per_s: null, records_out: 0 });
  const decode = await loadDist('src/decode/index.js');
  if (!decode || typeof decode.Decoder !== 'function' || typeof decode.decodeStream !== 'function') {
    return none('module missing: src/decode (Decoder, decodeStream)');
  }
  if ('reason' in recording) return none(`no recorded stream: ${recording.reason}`);
  if (recording.records === 0) return none('the recorded stream is empty');
  const Decoder = decode.Decoder as new (o: { emit: (r: unknown) => void }) => DecoderLike;
  const decodeStream = decode.decodeStream as (bytes: Uint8Array, d: DecoderLike) => number;
  const bytes = new Uint8Array(readFileSync(recording.file));

  let out = 0;
  let jsonBytes = 0;
  const count = (): void => {
    out++;
  };
  const toJson = (r: unknown): void => {
    out++;
    jsonBytes += JSON.stringify(r).length;
  };
  const timed = (emit: (r: unknown) => void): { records: number; seconds: number; rejected: number } => {
    decodeStream(bytes, new Decoder({ emit })); // warm-up
    let records = 0;
    let ms = 0;
    let rejected = 0;
    while (ms < minSeconds * 1000 && records < maxRecords) {
      const d = new Decoder({ emit });
      const t0 = performance.now();
      records += decodeStream(bytes, d);
      ms += performance.now() - t0;
      rejected += d.stats.rejected;
    }
    return { records, seconds: ms / 1000, rejected };
  };
  const plain = timed(count);
  out = 0;
  const withJson = timed(toJson);
  void jsonBytes;
  const rejectedNote = plain.rejected ? `, ${plain.rejected} records rejected` : '';
  return {
    records_per_s: plain.records / plain.seconds,
    records: plain.records,
    seconds: plain.seconds,
    with_json_records_per_s: withJson.records / withJson.seconds,
    records_out: out,
    note: `Decoder over a recorded stream of ${recording.records} real records (${(bytes.length / recording.records).toFixed(0)} B/record avg)${rejectedNote}`,
  };
}
