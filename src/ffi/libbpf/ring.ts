/**
 * A BPF ring buffer drained through libbpf's callback API: one JS callback per record, for tests and
 * low-rate use. The fast consumer maps the ring itself (src/ringbuf/).
 */
import koffi from 'koffi';
import { bindLibbpf, check, ptr, type RingBufferPtr } from './lib.js';

const SampleFn = koffi.proto('int kt_ring_buffer_sample_fn(void *ctx, void *data, size_t size)');

const c = bindLibbpf({
  rb_new: 'void *ring_buffer__new(int map_fd, kt_ring_buffer_sample_fn *cb, void *ctx, void *opts)',
  rb_poll: 'int ring_buffer__poll(void *rb, int timeout_ms)',
  rb_consume: 'int ring_buffer__consume(void *rb)',
  rb_free: 'void ring_buffer__free(void *rb)',
});

export type RingSample = (data: bigint, size: number) => number | void;

export interface LibbpfRingBuffer {
  /** Wait up to timeoutMs for data, then drain; returns the records consumed. */
  poll(timeoutMs: number): number;
  /** Drain without waiting; returns the records consumed. */
  consume(): number;
  free(): void;
}

export function ringBufferNew(mapFdValue: number, onSample: RingSample): LibbpfRingBuffer {
  const cb = koffi.register(
    (_ctx: bigint | null, data: bigint, size: number | bigint) => onSample(data, Number(size)) ?? 0,
    koffi.pointer(SampleFn),
  );
  let rb: RingBufferPtr;
  try {
    rb = ptr<RingBufferPtr>('ring_buffer__new', c().rb_new(mapFdValue, cb, null, null));
  } catch (err) {
    koffi.unregister(cb);
    throw err;
  }
  let freed = false;
  return {
    poll: (timeoutMs) => check('ring_buffer__poll', c().rb_poll(rb, timeoutMs) as number),
    consume: () => check('ring_buffer__consume', c().rb_consume(rb) as number),
    free: () => {
      if (freed) return;
      freed = true;
      c().rb_free(rb);
      koffi.unregister(cb);
    },
  };
}

/** A zero-copy view of `size` bytes at a record pointer handed to a RingSample. */
export function sampleView(data: bigint, size: number): ArrayBuffer {
  return koffi.view(data, size);
}
