/**
 * BPF ring-buffer consumer in three layers (cilium/ebpf style): records.ts (pure position arithmetic),
 * reader.ts (zero-copy mmap reader), consumer.ts (event-loop driven safe reader); stream.ts is a
 * recorded ring laid out flat (the same framing, read by the same record walk). A tiny real kernel
 * producer for tests and benchmarks lives with the dev tooling (scripts/lib/ring-producer.ts).
 */
export { RingCursor, recordStride, walkRecords, RINGBUF_BUSY_BIT, RINGBUF_DISCARD_BIT, RINGBUF_HDR_SZ } from './records.js';
export { FrameWriter, frameRecords, forEachRecord } from './stream.js';
export type { RecordHandler, DrainStep, RingPositionWords } from './records.js';
export { RawRingReader } from './reader.js';
export { StallGuard, type Stall } from './stall-guard.js';
export { RingBufferConsumer } from './consumer.js';
export type { RingConsumerOptions, RingConsumerStats } from './consumer.js';
