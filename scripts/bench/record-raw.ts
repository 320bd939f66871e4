/**
 * Records a real raw byte stream for the decoder benchmark: kvm-trace's own BPF programs (src/bpf/tracer.ts)
 * attached to one gated workload run, the ring drained by the real consumer (src/ringbuf/consumer.ts), and
 * every record copied out framed exactly as the ring frames it (src/ringbuf/stream.ts's FrameWriter, the
 * format the decoder benchmark replays).
 * So the decoder is timed on what the kernel really produced for this workload — KVM_RUN records with their
 * kvm_run snapshots, set-up ioctls, fd and mmap records — not on synthetic bytes.
 * Modules come from dist/ at run time; a missing one yields a reason instead of a failure.
 */
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { existsSync } from 'node:fs';
import { distPath } from './paths.js';
import { describeExit, lastLine, type ProcessSet } from './procs.js';
import { gated, type Workload } from './workloads.js';

export interface Recording {
  file: string;
  records: number;
  bytes: number;
  /** Records the kernel side could not submit (ring full) while recording. */
  lost: number;
}

interface TracerLike {
  ringMapFd: number;
  ringBytes: number;
  stats(): { lost: number; events: number };
  close(): void;
}
interface ConsumerLike {
  close(): void;
}
interface FrameWriterLike {
  records: number;
  add(view: DataView, off: number, len: number): void;
  bytes(): Uint8Array;
}

async function load(rel: string): Promise<Record<string, unknown> | null> {
  const p = distPath(rel);
  return existsSync(p) ? ((await import(pathToFileURL(p).href)) as Record<string, unknown>) : null;
}

export async function recordRawStream(
  procs: ProcessSet,
  workload: Workload,
  exits: number,
  file: string,
): Promise<Recording | { reason: string }> {
  const bpf = await load('src/bpf/tracer.js');
  const ring = await load('src/ringbuf/index.js');
  if (!bpf || typeof bpf.KvmTracer !== 'function') return { reason: 'module missing: src/bpf/tracer.js (KvmTracer)' };
  if (!ring || typeof ring.RingBufferConsumer !== 'function' || typeof ring.FrameWriter !== 'function') {
    return { reason: 'module missing: src/ringbuf (RingBufferConsumer, FrameWriter)' };
  }
  const KvmTracer = bpf.KvmTracer as unknown as { open(o: { pids: number[] }): TracerLike };
  const Consumer = ring.RingBufferConsumer as new (
    fd: number,
    size: number,
    o: { onRecord: (v: DataView, off: number, len: number) => void; intervalMs: number },
  ) => ConsumerLike;
  const FrameWriter = ring.FrameWriter as new (initialBytes?: number) => FrameWriterLike;

  const argv = gated(workload.argv(exits));
  const work = procs.spawn(`record ${workload.id}`, argv[0], argv.slice(1), { stdin: 'pipe' });
  let tracer: TracerLike | undefined;
  let consumer: ConsumerLike | undefined;
  const frames = new FrameWriter(16 << 20);
  try {
    tracer = KvmTracer.open({ pids: [work.pid] });
    consumer = new Consumer(tracer.ringMapFd, tracer.ringBytes, { onRecord: (v, o, l) => frames.add(v, o, l), intervalMs: 10 });
    work.child.stdin?.end('\n');
    const exit = await work.exited;
    if (exit.code !== 0) throw new Error(`${workload.id} failed while recording (${describeExit(exit)}): ${lastLine(work.stderr())}`);
    consumer.close(); // flushes what is left in the ring
    consumer = undefined;
    const lost = tracer.stats().lost;
    const bytes = frames.bytes();
    writeFileSync(file, bytes);
    return { file, records: frames.records, bytes: bytes.length, lost };
  } catch (e) {
    return { reason: `recording failed: ${(e as Error).message.split('\n')[0]}` };
  } finally {
    consumer?.close();
    tracer?.close();
    if (!work.done) await procs.stop(work, 'SIGKILL', 5_000);
  }
}
