/**
 * The safe ring-buffer reader the capture session uses: drains the mmapped ring (reader.ts) from the event
 * loop when the kernel signals the map fd, AND on a timer — the BPF side submits with BPF_RB_NO_WAKEUP
 * (a wakeup per record costs 1.9× on this host, see shared/HOST.md) and only forces a wakeup past a fill
 * threshold, so the timer is what normally drains. Counts records rejected as too short; flush() drains
 * what is left; close() flushes, stops polling and unmaps, and is idempotent.
 *
 * A background drain gives the event loop back after `maxMsPerTurn` (default 5 ms): records are handed
 * over in slices of SLICE_RECORDS, the clock is read between slices (not per record), and a drain that ran
 * out of time goes on from setImmediate — after the loop has polled I/O, so a Prometheus scrape or a
 * stop signal is answered within a slice or two even while the ring holds hundreds of thousands of records.
 *
 * Records are handed to `onRecord` as (view, offset, len) without copying; the view is valid only during
 * the call (the memory is unmapped on close).
 *
 * A corrupt ring never makes it spin silently: a header with a length no record can have is skipped at
 * once, and a header that stays busy (or claims more than was produced) for `stallMs` while the producer
 * has written past it is taken for corruption too. Either way the consumer resynchronises at the producer
 * position — the one place a record is sure to start — counts it (`resyncs`, `skippedBytes`), says so in
 * one line (`onRingError`), and goes on. A handler that throws skips only its record (counted in
 * `handlerErrors`) when `onHandlerError` is given; without it, the drain stops and the error is reported.
 */
import { watchReadable, type FdWatch } from '../ffi/poll.js';
import { RawRingReader } from './reader.js';
import type { DrainStep, RecordHandler } from './records.js';
import { StallGuard, type Stall } from './stall-guard.js';

export interface RingConsumerOptions {
  /** Called for each record of at least `minRecordLen` bytes. */
  onRecord: RecordHandler;
  /** Records shorter than this are counted in `rejected` and not delivered (default 0: deliver all). */
  minRecordLen?: number;
  /** Timed drain period in ms (default 20); 0 disables the timer (poll wakeups only). */
  intervalMs?: number;
  /** Watch the map fd for kernel wakeups from the event loop (default true). */
  poll?: boolean;
  /** Most records drained in one event-loop turn before yielding (default 1 000 000). */
  maxRecordsPerTurn?: number;
  /** Longest a background drain keeps the event loop before yielding, in ms (default 5; Infinity: no limit). */
  maxMsPerTurn?: number;
  /** A background drain's handler threw: the consumer stops and reports here (else flush/close rethrow). */
  onError?: (err: unknown) => void;
  /** Given: a throwing handler skips only its record (counted) and draining goes on; else see onError. */
  onHandlerError?: (err: unknown) => void;
  /** One line when the ring had to be resynchronised (corrupt or stuck header). */
  onRingError?: (line: string) => void;
  /** How long a header may stay busy or short while data follows it before it counts as corrupt (default 2000). */
  stallMs?: number;
  /** Clock for stall detection (ms); default performance.now. */
  now?: () => number;
  /** Keep the process alive while open (default true). */
  ref?: boolean;
}

export interface RingConsumerStats {
  /** Records read from the ring (delivered to onRecord + rejected). */
  records: number;
  /** Records shorter than minRecordLen: not delivered, counted. */
  rejected: number;
  /** Records the producer discarded (bpf_ringbuf_discard). */
  discarded: number;
  /** Drain passes run (poll, timer, flush). */
  drains: number;
  /** Drain passes started by a kernel wakeup. */
  wakeups: number;
  /** Background drains that stopped at their time or record budget and went on in a later turn. */
  yields: number;
  /** Times the ring was resynchronised after a corrupt or stuck header. */
  resyncs: number;
  /** Bytes skipped by those resyncs (records lost with them). */
  skippedBytes: number;
  /** Records whose handler threw (with onHandlerError: skipped, draining went on). */
  handlerErrors: number;
}

/** Records handed over between two looks at the clock: ≈ 0.3-0.6 ms of decoding, one clock read. */
const SLICE_RECORDS = 256;

export class RingBufferConsumer {
  private reader: RawRingReader | null;
  private watch: FdWatch | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly handler: RecordHandler;
  private readonly maxPerTurn: number;
  private readonly maxMsPerTurn: number;
  private immediate: NodeJS.Immediate | null = null;
  private readonly ref: boolean;
  private readonly onError?: (err: unknown) => void;
  private error: unknown = undefined;
  /** A background drain failed: no more automatic drains, and close() does not drain either. */
  private failed = false;
  private draining = false;
  private readonly onHandlerError?: (err: unknown) => void;
  private readonly onRingError: (line: string) => void;
  private readonly guard: StallGuard;
  readonly stats: RingConsumerStats = {
    records: 0, rejected: 0, discarded: 0, drains: 0, wakeups: 0, yields: 0, resyncs: 0, skippedBytes: 0, handlerErrors: 0,
  };

  /** Map the ring of map fd `mapFd` (max_entries = `size` bytes) and start draining it. */
  constructor(mapFd: number, size: number, opts: RingConsumerOptions) {
    this.reader = new RawRingReader(mapFd, size);
    this.maxPerTurn = opts.maxRecordsPerTurn ?? 1_000_000;
    this.maxMsPerTurn = opts.maxMsPerTurn ?? 5;
    this.ref = opts.ref ?? true;
    this.onError = opts.onError;
    this.onHandlerError = opts.onHandlerError;
    this.onRingError = opts.onRingError ?? (() => {});
    this.guard = new StallGuard(opts.stallMs, opts.now);
    const min = opts.minRecordLen ?? 0;
    const onRecord = opts.onRecord;
    const stats = this.stats;
    this.handler =
      min > 0
        ? (view, off, len) => {
            if (len < min) stats.rejected++;
            else onRecord(view, off, len);
          }
        : onRecord;
    try {
      if (opts.poll ?? true) {
        this.watch = watchReadable(mapFd, () => {
          this.stats.wakeups++;
          this.background();
        });
        if (opts.ref === false) this.watch.unref();
      }
      const interval = opts.intervalMs ?? 20;
      if (interval > 0) {
        this.timer = setInterval(() => this.background(), interval);
        if (opts.ref === false) this.timer.unref();
      }
    } catch (e) {
      this.stop();
      this.reader.close();
      this.reader = null;
      throw e;
    }
  }

  get closed(): boolean {
    return this.reader === null;
  }

  /** Bytes produced and not yet consumed. */
  availableBytes(): number {
    return this.reader ? this.reader.availableBytes() : 0;
  }

  /**
   * Drain everything the producer has published (also past maxRecordsPerTurn). Returns the records
   * read (delivered + rejected). Rethrows an error a background drain hit, or the handler's error.
   */
  flush(): number {
    this.throwPending();
    return this.drainAll(Number.MAX_SAFE_INTEGER, Infinity).records;
  }

  /**
   * Final flush (skipped after a background failure), stop polling and the timer, unmap. Idempotent;
   * rethrows a pending handler error once.
   */
  close(): void {
    if (!this.reader) return;
    this.stop();
    try {
      if (!this.failed) this.drainAll(Number.MAX_SAFE_INTEGER, Infinity);
    } finally {
      this.reader.close();
      this.reader = null;
    }
    this.throwPending();
  }

  private background(): void {
    if (!this.reader || this.failed) return;
    try {
      if (this.drainAll(this.maxPerTurn, this.maxMsPerTurn).cut) this.continueSoon();
    } catch (e) {
      this.error = e;
      this.failed = true;
      this.stop();
      if (this.onError) {
        this.error = undefined;
        this.onError(e);
      }
    }
  }

  /** A drain stopped at its budget with records left: go on once the event loop has polled I/O. */
  private continueSoon(): void {
    this.stats.yields++;
    if (this.immediate) return;
    this.immediate = setImmediate(() => {
      this.immediate = null;
      this.background();
    });
    if (!this.ref) this.immediate.unref();
  }

  /**
   * Hand over records until the ring is empty (or a record is busy), `maxRecords` were read, or `maxMs`
   * passed; `cut` says it stopped at a budget with more possibly waiting.
   */
  private drainAll(maxRecords: number, maxMs: number): { records: number; cut: boolean } {
    const reader = this.reader;
    if (!reader || this.draining) return { records: 0, cut: false };
    this.draining = true;
    const until = maxMs === Infinity ? Infinity : performance.now() + maxMs;
    let total = 0;
    let cut = false;
    try {
      this.stats.drains++;
      const out = (): boolean => total >= maxRecords || (until !== Infinity && performance.now() >= until);
      for (;;) {
        let step: DrainStep;
        try {
          step = reader.drain(this.handler, Math.min(SLICE_RECORDS, maxRecords - total));
        } catch (err) {
          // The handler threw: the cursor is already past that record (and committed).
          if (!this.onHandlerError) throw err;
          this.stats.handlerErrors++;
          this.onHandlerError(err);
          if (out()) {
            cut = true;
            break;
          }
          continue;
        }
        total += step.records;
        this.stats.discarded += step.discarded;
        if (step.stall && this.corrupt(reader, step.stall)) continue;
        if (!step.stall) this.guard.clear();
        if ((step.records === 0 && step.discarded === 0) || step.busy) break;
        if (out()) {
          cut = true;
          break;
        }
      }
    } finally {
      this.draining = false;
      this.stats.records += total;
    }
    return { records: total, cut };
  }

  /** Draining stopped at `stall`: resynchronise (true) when the guard calls it corruption, else wait (false). */
  private corrupt(reader: RawRingReader, stall: Stall): boolean {
    const why = this.guard.check(stall, reader.availableBytes(), reader.size);
    if (why === undefined) return false;
    const skipped = reader.resync();
    this.stats.resyncs++;
    this.stats.skippedBytes += skipped;
    this.onRingError(`ring buffer: the record header at position ${stall.pos} ${why}: skipped ${skipped} bytes to the producer position and went on (resync #${this.stats.resyncs})`);
    return true;
  }

  private stop(): void {
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = null;
    this.watch?.close();
    this.watch = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private throwPending(): void {
    if (this.error === undefined) return;
    const e = this.error;
    this.error = undefined;
    throw e;
  }
}
