/**
 * When an ioctl entered. A record whose entry was not seen (tracing attached mid-call, `no_enter`) has
 * enter_ns 0; its span starts and ends at the exit rather than at boot time.
 */
import type { IoctlRecord } from '../../decode/records.js';

export function enterOf(r: IoctlRecord): number {
  return r.no_enter || r.enter_ns <= 0 ? r.ts_ns : r.enter_ns;
}
