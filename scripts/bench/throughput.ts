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
 * from the same state; one untimed pass first warms the JIT. The second figure is the whole record path of
 * `attach -o FILE` (src/capture/record-path.ts: decode, flags, summary, exit path, the JSONL sink writing a
 * real file): records/s, and its CPU µs per record (process CPU over the pass, the write's kernel time and
 * the stream's worker thread included) — the offline counterpart of the bench's live cpu_us_per_record.
 */
export async function decoderThroughput(
  recording: { file: string; records: number } | { reason: string },
  minSeconds: number,
  maxRecords: number,
  scratchFile: string,
): Promise<Throughput & { with_json_records_per_s: number | null; record_path_cpu_us: number | null; records_out: number }> {
  const none = (note: string) => ({ ...na(note), with_json_records_per_s: null, record_path_cpu_us: null, records_out: 0 });
  const decode = await loadDist('src/decode/index.js');
  const capture = await loadDist('src/capture/record-path.js');
  const btfMod = await loadDist('src/btf/index.js');
  if (!decode || typeof decode.Decoder !== 'function' || typeof decode.decodeStream !== 'function') {
    return none('module missing: src/decode (Decoder, decodeStream)');
  }
  if ('reason' in recording) return none(`no recorded stream: ${recording.reason}`);
  if (recording.records === 0) return none('the recorded stream is empty');
  const Decoder = decode.Decoder as new (o: { emit: (r: unknown) => void }) => DecoderLike;
  const decodeStream = decode.decodeStream as (bytes: Uint8Array, d: DecoderLike) => number;
  const bytes = new Uint8Array(readFileSync(recording.file));

  let out = 0;
  const count = (): void => {
    out++;
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
  const path = capture && btfMod ? await recordPathPasses(capture, decode, btfMod, bytes, minSeconds, maxRecords, scratchFile) : null;
  const rejectedNote = plain.rejected ? `, ${plain.rejected} records rejected` : '';
  return {
    records_per_s: plain.records / plain.seconds,
    records: plain.records,
    seconds: plain.seconds,
    with_json_records_per_s: path ? path.records / path.seconds : null,
    record_path_cpu_us: path ? (path.cpuS * 1e6) / path.records : null,
    records_out: out,
    note:
      `Decoder over a recorded stream of ${recording.records} real records (${(bytes.length / recording.records).toFixed(0)} B/record avg)${rejectedNote}` +
      `; "with JSON": the record path of attach -o (decode, flags, summary, exit path, JSONL to a file)`,
  };
}

interface PathLike {
  onRecord(view: DataView, off: number, len: number): void;
  finish(): void;
  buildSummary(f: Record<string, unknown>): unknown;
  close(summary: unknown): Promise<void>;
}

/** Passes of the record path over the recording into a real JSONL file; records, wall seconds and CPU seconds. */
async function recordPathPasses(
  capture: Record<string, unknown>,
  decode: Record<string, unknown>,
  btfMod: Record<string, unknown>,
  bytes: Uint8Array,
  minSeconds: number,
  maxRecords: number,
  file: string,
): Promise<{ records: number; seconds: number; cpuS: number } | null> {
  const RecordPath = capture.RecordPath as (new (o: Record<string, unknown>) => PathLike) | undefined;
  const JsonlSink = decode.JsonlSink as { open(path: string): Promise<unknown> } | undefined;
  const forEach = (await loadDist('src/ringbuf/stream.js'))?.forEachRecord as ((b: Uint8Array, h: PathLike['onRecord']) => number) | undefined;
  if (!RecordPath || !JsonlSink || !forEach) return null;
  const btf = (btfMod.Btf as { vmlinux(): unknown }).vmlinux();
  const facts = { strategy: 'bench', lost: 0, duration_s: 0, ringRejected: 0, noEnter: 0, stateUnavailable: 0, attachMs: null };
  const pass = async (): Promise<{ records: number; ms: number; cpu: number }> => {
    const path = new RecordPath({ btf, sinks: [await JsonlSink.open(file)], lineSize: 64 });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const n = forEach(bytes, (v, o, l) => path.onRecord(v, o, l));
    path.finish();
    await path.close(path.buildSummary(facts));
    const c = process.cpuUsage(c0);
    return { records: n, ms: performance.now() - t0, cpu: (c.user + c.system) / 1e6 };
  };
  await pass(); // warm-up
  let records = 0;
  let ms = 0;
  let cpu = 0;
  while (ms < minSeconds * 1000 && records < maxRecords) {
    const p = await pass();
    records += p.records;
    ms += p.ms;
    cpu += p.cpu;
  }
  return { records, seconds: ms / 1000, cpuS: cpu };
}
