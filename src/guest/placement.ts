/**
 * Where the `layout` scenario puts ioctl argument buffers, and the flags those addresses must earn, by
 * plain arithmetic: misaligned = addr % align != 0; cacheline_cross = the buffer touches more 64-byte lines
 * than the fewest a buffer of its length needs. This is the ground truth a tracer's flags are compared with.
 */
import type { GtBuffer, PlacementIntent } from './records.js';

export const LINE = 64;

/** A placement to try: the intent and the byte offset within a line (aligned/misaligned) or before a boundary. */
export interface Placement {
  intent: PlacementIntent;
  /** Short label for reports, e.g. "misaligned+3". */
  label: string;
}

export const PLACEMENTS: readonly Placement[] = [
  { intent: 'aligned', label: 'aligned' },
  { intent: 'misaligned', label: 'misaligned+1' },
  { intent: 'misaligned', label: 'misaligned+3' },
  { intent: 'line-cross', label: 'line-cross' },
  { intent: 'page-cross', label: 'page-cross' },
];

export function linesTouched(addr: bigint, len: number): number {
  if (len <= 0) return 0;
  const first = addr / BigInt(LINE);
  const last = (addr + BigInt(len) - 1n) / BigInt(LINE);
  return Number(last - first) + 1;
}

export const minLines = (len: number): number => Math.ceil(len / LINE);

/** The expected flags for a buffer at `addr` of `len` bytes whose type aligns to `align`. */
export function expectedFlags(addr: bigint, len: number, align: number): GtBuffer['expected'] & { lines: number; min_lines: number } {
  const lines = linesTouched(addr, len);
  const min = minLines(len);
  return { misaligned: addr % BigInt(align) !== 0n, cacheline_cross: lines > min, lines, min_lines: min };
}

/**
 * Bytes before a boundary at which a `len`-byte buffer starts so that it crosses more lines than needed:
 * the smallest multiple of `align` that does it, else (short buffers cannot cross while aligned) the
 * smallest byte count that does.
 */
export function crossingBackoff(len: number, align: number): number {
  const crosses = (d: number): boolean => linesTouched(BigInt(LINE * 4 - d), len) > minLines(len);
  for (let d = align; d < LINE; d += align) if (crosses(d)) return d;
  for (let d = 1; d < LINE; d++) if (crosses(d)) return d;
  return 1; // len 1 cannot cross a line at all
}

/**
 * The address for a `len`-byte buffer in `region` (a slot of at least two pages, page-aligned, so the
 * page-cross placement straddles its first page boundary) following `p`.
 */
export function placeIn(region: bigint, pageSize: number, p: Placement, len: number, align: number): bigint {
  switch (p.label) {
    case 'aligned':
      return region + BigInt(LINE); // line-aligned, hence aligned for every type
    case 'misaligned+1':
      return region + BigInt(LINE + 1);
    case 'misaligned+3':
      return region + BigInt(LINE + 3);
    case 'line-cross':
      return region + BigInt(LINE * 8 - crossingBackoff(len, align));
    default:
      return region + BigInt(pageSize - crossingBackoff(len, align));
  }
}

/** A ground-truth buffer record for `what` at `addr`. */
export function gtBuffer(what: string, dir: GtBuffer['dir'], addr: bigint, len: number, align: number, intent: PlacementIntent): GtBuffer {
  const f = expectedFlags(addr, len, align);
  return {
    what,
    dir,
    addr: `0x${addr.toString(16)}`,
    len,
    align,
    intent,
    lines: f.lines,
    min_lines: f.min_lines,
    expected: { misaligned: f.misaligned, cacheline_cross: f.cacheline_cross },
  };
}
