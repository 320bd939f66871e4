/**
 * A struct's layout as a VMM author wants to see it: every member (anonymous records expanded in place,
 * their members at absolute offsets), holes and tail padding, and the cache line each member starts on and
 * whether it straddles a line boundary. Both `kvm-trace abi` outputs (pahole-style text and --json) are
 * rendered from this one walk, so they cannot disagree.
 */
import type { MemberLayout, StructLayout } from '../../btf/index.js';

export interface RowMember {
  /** Dotted path from the top struct, anonymous records adding no part ("io.port"). */
  name: string;
  offset: number;
  size: number;
  /** C type spelling. */
  type: string;
  /** Nesting depth in the printed layout (0 = member of the top struct). */
  depth: number;
  /** Cache line of the first byte. */
  line: number;
  /** Lines the member touches, and the fewest its size could touch. */
  lines: number;
  minLines: number;
  /** True when the member spans a cache-line boundary. */
  straddles: boolean;
  /** Present for bitfields: bit offset from the top struct and width. */
  bitOffset?: number;
  bitSize?: number;
  /** The member itself: its BTF name (no path) and layout. */
  member: MemberLayout;
}

export interface Hole {
  /** Byte offset where the unused space starts (for bit holes: the byte holding the first unused bit). */
  offset: number;
  /** Unused bytes (whole bytes); bits holds the remainder for bitfield gaps. */
  size: number;
  bits: number;
  /** Path of the member before the hole ("" at the start). */
  after: string;
  /** 'hole' between members, 'padding' at the end of a (nested) struct. */
  kind: 'hole' | 'padding';
}

export type LayoutEvent =
  | { kind: 'member'; row: RowMember }
  | { kind: 'open'; record: 'struct' | 'union'; depth: number }
  | { kind: 'close'; row: RowMember }
  | { kind: 'hole'; hole: Hole; depth: number }
  | { kind: 'boundary'; line: number; bytesAgo: number; depth: number };

export interface LayoutReport {
  name: string;
  kind: 'struct' | 'union';
  size: number;
  align: number;
  lineSize: number;
  cachelines: number;
  /** Leaf and record members in print order (the rows of expanded anonymous records' closings included). */
  members: RowMember[];
  holes: Hole[];
  /** Tail padding of the top struct in bytes. */
  padding: number;
  events: LayoutEvent[];
}

function span(offset: number, size: number, lineSize: number): { line: number; lines: number; minLines: number } {
  const line = Math.floor(offset / lineSize);
  if (size <= 0) return { line, lines: 1, minLines: 0 };
  const last = Math.floor((offset + size - 1) / lineSize);
  return { line, lines: last - line + 1, minLines: Math.ceil(size / lineSize) };
}

/** Walk `layout` into members, holes and cache-line boundary events. */
export function layoutReport(layout: StructLayout, lineSize: number): LayoutReport {
  if (!Number.isInteger(lineSize) || lineSize <= 0) throw new RangeError(`cache line size must be a positive integer, got ${lineSize}`);
  const events: LayoutEvent[] = [];
  const members: RowMember[] = [];
  const holes: Hole[] = [];
  let nextBoundary = lineSize; // the next boundary not yet announced

  const row = (m: MemberLayout, path: string, base: number, depth: number): RowMember => {
    const offset = base + m.offset;
    const s = span(offset, m.size, lineSize);
    const r: RowMember = { name: path, offset, size: m.size, type: m.typeName, depth, line: s.line, lines: s.lines,
      minLines: s.minLines, straddles: s.lines > 1, member: m };
    if (m.bitSize > 0) {
      r.bitOffset = base * 8 + m.bitOffset;
      r.bitSize = m.bitSize;
    }
    return r;
  };

  /** Announce boundaries at or before `offset`; those inside the previous member say how far back they were. */
  const boundariesUpTo = (offset: number, depth: number, from = offset): void => {
    let last: number | undefined;
    while (nextBoundary <= offset) {
      last = nextBoundary;
      nextBoundary += lineSize;
    }
    if (last !== undefined) events.push({ kind: 'boundary', line: last / lineSize, bytesAgo: from - last, depth });
  };

  const walk = (l: StructLayout, base: number, prefix: string, depth: number): void => {
    let endBits = base * 8;
    let prev = prefix;
    for (const m of l.members) {
      const path = m.name === '' ? prefix : prefix ? `${prefix}.${m.name}` : m.name;
      const startBits = base * 8 + m.bitOffset;
      if (l.kind === 'struct' && startBits > endBits) {
        const gap = startBits - endBits;
        const hole: Hole = { offset: Math.floor(endBits / 8), size: Math.floor(gap / 8), bits: gap % 8, after: prev, kind: 'hole' };
        holes.push(hole);
        events.push({ kind: 'hole', hole, depth });
      }
      boundariesUpTo(base + m.offset, depth);
      const r = row(m, path, base, depth);
      if (m.nested && m.nested.name === '') {
        events.push({ kind: 'open', record: m.nested.kind, depth });
        walk(m.nested, base + m.offset, path, depth + 1);
        events.push({ kind: 'close', row: r });
      } else {
        events.push({ kind: 'member', row: r });
      }
      members.push(r);
      const memberEnd = m.bitSize > 0 ? startBits + m.bitSize : (base + m.offset + m.size) * 8;
      endBits = Math.max(endBits, memberEnd); // union members all start at base: the end is the largest
      prev = path || prev;
      // Boundaries crossed inside this member are announced after it, pahole style ("was N bytes ago").
      const end = base + m.offset + m.size;
      if (nextBoundary < end && m.nested?.name !== '') boundariesUpTo(end - 1, depth, end);
    }
    const tailBits = (base + l.size) * 8 - endBits;
    if (tailBits > 0 && depth > 0 && l.kind === 'struct') {
      const hole: Hole = { offset: Math.floor(endBits / 8), size: Math.floor(tailBits / 8), bits: tailBits % 8, after: prev, kind: 'padding' };
      holes.push(hole);
      events.push({ kind: 'hole', hole, depth });
    }
    if (depth === 0) padding = Math.max(0, Math.floor(tailBits / 8));
  };

  let padding = 0;
  walk(layout, 0, '', 0);
  return {
    name: layout.name, kind: layout.kind, size: layout.size, align: layout.align, lineSize,
    cachelines: Math.ceil(layout.size / lineSize), members, holes, padding, events,
  };
}

/** The --json shape: {name,size,align,members:[{name,offset,size,type,straddles,line}],holes:[…]}. */
export function layoutJson(r: LayoutReport): object {
  return {
    name: r.name,
    kind: r.kind,
    size: r.size,
    align: r.align,
    lineSize: r.lineSize,
    cachelines: r.cachelines,
    padding: r.padding,
    // Anonymous records are not listed themselves (their path would repeat the parent's); their members are.
    members: r.members.filter((m) => m.member.name !== '').map((m) => ({
      name: m.name,
      offset: m.offset,
      size: m.size,
      type: m.type,
      straddles: m.straddles,
      line: m.line,
      lines: m.lines,
      ...(m.bitSize !== undefined ? { bitOffset: m.bitOffset, bitSize: m.bitSize } : {}),
    })),
    holes: r.holes.map((h) => ({ offset: h.offset, size: h.size, bits: h.bits, after: h.after, kind: h.kind })),
  };
}
