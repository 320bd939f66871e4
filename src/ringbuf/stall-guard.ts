/**
 * When a stopped drain means a corrupt ring (pure, unit-tested on a plain buffer with a fake clock).
 * The record walk (records.ts) stops at a header it cannot pass: still being written (busy), claiming more
 * than was produced (short), or with a length no record of the ring can have (bad_length). A busy or short
 * header is normal for a moment — a producer on another CPU is filling it in — so it counts as corruption
 * only when the same header stays stuck for `stallMs` while the producer has written past it; a bad length
 * is corruption at once. The consumer then resynchronises at the producer position (RingCursor.skipToProducer).
 */
import { recordStride, type DrainStep } from './records.js';

export type Stall = NonNullable<DrainStep['stall']>;

export class StallGuard {
  private stuck: { pos: number; since: number } | undefined;

  constructor(
    private readonly stallMs = 2000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Draining went past every header: nothing is stuck. */
  clear(): void {
    this.stuck = undefined;
  }

  /**
   * Draining stopped at `stall` with `available` bytes produced and not consumed in a ring of `ringSize`
   * bytes: why this is corruption (one phrase), or undefined to wait and look again.
   */
  check(stall: Stall, available: number, ringSize: number): string | undefined {
    if (stall.kind === 'bad_length') {
      this.stuck = undefined;
      return `has length ${stall.len}, which does not fit in a ${ringSize}-byte ring`;
    }
    const t = this.now();
    if (this.stuck?.pos !== stall.pos) {
      this.stuck = { pos: stall.pos, since: t };
      return undefined;
    }
    const after = available - recordStride(stall.len);
    const waited = t - this.stuck.since;
    if (waited < this.stallMs || after <= 0) return undefined;
    this.stuck = undefined;
    const what = stall.kind === 'busy' ? 'stayed busy' : `claimed ${stall.len} bytes, more than were produced,`;
    return `${what} for ${(waited / 1000).toFixed(1)} s with ${after} bytes written after it`;
  }
}
