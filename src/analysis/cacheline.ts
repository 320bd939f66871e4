/**
 * Cache-line geometry of a byte range: how many lines it touches versus the fewest lines its length could
 * occupy, and whether its address is a multiple of its type's natural alignment. The line size is the
 * machine's (sysfs coherency_line_size), 64 when it cannot be read, and always overridable.
 */
import { readFileSync } from 'node:fs';

export const DEFAULT_LINE_SIZE = 64;
const SYSFS_LINE_SIZE = '/sys/devices/system/cpu/cpu0/cache/index0/coherency_line_size';

/** The L1 data cache line size of cpu0, or 64 when sysfs does not say (non-Linux, containers). */
export function systemLineSize(path = SYSFS_LINE_SIZE): number {
  try {
    const n = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0 ? n : DEFAULT_LINE_SIZE;
  } catch {
    return DEFAULT_LINE_SIZE;
  }
}

export interface LineSpan {
  /** Lines the range [addr, addr + len) touches. */
  lines: number;
  /** Fewest lines a range of this length can touch: ceil(len / lineSize). */
  minLines: number;
  /** First and last line index touched (addr / lineSize), as bigint because addresses are 64-bit. */
  first: bigint;
  last: bigint;
}

/** Lines touched by [addr, addr + len). A zero-length range touches none. */
export function lineSpan(addr: bigint, len: number, lineSize: number): LineSpan {
  const ls = BigInt(lineSize);
  if (len <= 0) return { lines: 0, minLines: 0, first: addr / ls, last: addr / ls };
  const first = addr / ls;
  const last = (addr + BigInt(len) - 1n) / ls;
  return { lines: Number(last - first) + 1, minLines: Math.ceil(len / lineSize), first, last };
}

export interface BufferGeometry {
  misaligned: boolean;
  cacheline_cross: boolean;
  lines: number;
  min_lines: number;
}

/**
 * The two flags of a copied buffer: misaligned when addr is not a multiple of its type's natural
 * alignment; cacheline_cross when it touches more lines than its length needs.
 */
export function bufferGeometry(addr: bigint, len: number, align: number, lineSize: number): BufferGeometry {
  const span = lineSpan(addr, len, lineSize);
  return {
    misaligned: align > 1 && addr % BigInt(align) !== 0n,
    cacheline_cross: span.lines > span.minLines,
    lines: span.lines,
    min_lines: span.minLines,
  };
}
