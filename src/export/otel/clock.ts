/**
 * CLOCK_MONOTONIC ns (what bpf_ktime_get_ns returns, and what every record's ts_ns / enter_ns holds) to
 * OpenTelemetry's HrTime, which is epoch time as [seconds, nanoseconds].
 *
 * Why one paired reading: the two clocks drift apart only through NTP slewing, which is tiny over a capture,
 * while reading them at different moments would put every span off by the gap. So the offset is taken once,
 * from process.hrtime.bigint() (libuv's uv_hrtime: CLOCK_MONOTONIC on Linux) read back to back with
 * performance.timeOrigin + performance.now() (epoch ms with µs resolution). The VMM's own OTel SDK uses the
 * same performance clock, so our spans line up with its traces.
 *
 * Conversion stays in plain numbers: a monotonic ns value is < 2^53 (104 days of uptime is 9e15 ns), so it
 * splits exactly into seconds and a remainder; the epoch offset is pre-split the same way.
 */
import type { HrTime } from '@opentelemetry/api';

export interface ClockPair {
  /** CLOCK_MONOTONIC ns at the pairing instant. */
  monoNs: bigint;
  /** Epoch ns at the same instant. */
  epochNs: bigint;
}

/** Read both clocks once, the monotonic one in between two epoch readings to halve the gap. */
export function readClockPair(): ClockPair {
  const before = performance.now();
  const monoNs = process.hrtime.bigint();
  const after = performance.now();
  const epochMs = performance.timeOrigin + (before + after) / 2;
  return { monoNs, epochNs: BigInt(Math.round(epochMs * 1e6)) };
}

export class MonotonicToEpoch {
  private readonly offSec: number;
  private readonly offNs: number;

  constructor(readonly pair: ClockPair = readClockPair()) {
    const off = pair.epochNs - pair.monoNs; // positive: the epoch is far ahead of boot time
    this.offSec = Number(off / 1_000_000_000n);
    this.offNs = Number(off % 1_000_000_000n);
  }

  /** HrTime for a CLOCK_MONOTONIC ns value. */
  hrTime(monoNs: number): HrTime {
    const t = Math.round(monoNs);
    const sec = Math.floor(t / 1e9);
    let ns = t - sec * 1e9 + this.offNs;
    let s = sec + this.offSec;
    if (ns >= 1e9) {
      ns -= 1e9;
      s += 1;
    }
    return [s, ns];
  }

  /** Epoch ns as a bigint (for tests and logs). */
  epochNs(monoNs: number): bigint {
    return BigInt(Math.round(monoNs)) + (this.pair.epochNs - this.pair.monoNs);
  }

  /** The current CLOCK_MONOTONIC time in ns, as a record would carry it. */
  static nowNs(): number {
    return Number(process.hrtime.bigint());
  }
}
