/**
 * BPF ring-buffer consumer in three layers (cilium/ebpf style): records.ts (pure position arithmetic),
 * reader.ts (zero-copy mmap reader), consumer.ts (event-loop driven safe reader). A tiny real kernel
 * producer for tests and benchmarks lives with the dev tooling (scripts/lib/ring-producer.ts).
 */
export { RingCursor, recordStride, RINGBUF_BUSY_BIT, RINGBUF_DISCARD_BIT, RINGBUF_HDR_SZ } from './records.js';
export type { RecordHandler, DrainStep, RingPositionWords } from './records.js';
export { RawRingReader } from './reader.js';
export { RingBufferConsumer } from './consumer.js';
export type { RingConsumerOptions, RingConsumerStats } from './consumer.js';
