/**
 * Throughput of the user-space pipeline stages, measured in this process on real data:
 *  - ring-buffer drain: a real BPF ring buffer (src/ringbuf/producer.ts fills it in the kernel with
 *    BPF_PROG_TEST_RUN), drained through the zero-copy mmap reader (src/ringbuf/reader.ts), timed for the
 *    drain only;
 *  - decoder: records per second turning a recorded raw byte stream into JSONL records (src/decode).
 * The modules are loaded from dist/ at run time: a stage whose module is not built yet is reported as
 * "n/a (module missing)" instead of failing the benchmark.
 */
import { existsSync } from 'node:fs';
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
  const prod = await loadDist('src/ringbuf/producer.js');
  if (!ring || !prod || typeof ring.RawRingReader !== 'function' || typeof prod.TestRingProducer !== 'function') {
    return na('n/a (module missing: src/ringbuf reader/producer not built)');
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

/** Decoder throughput over a recorded raw stream; waits for src/decode to export a raw-stream decoder. */
export async function decoderThroughput(_minSeconds: number, _maxRecords: number): Promise<Throughput> {
  const decode = await loadDist('src/decode/index.js');
  if (!decode) return na('n/a (module missing: src/decode/index.js not built)');
  return na('n/a (src/decode exports no raw-stream decoder yet)');
}
