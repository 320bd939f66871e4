/**
 * pahole-style text for a LayoutReport: one line per member with `/* offset size *\/`, holes and padding
 * as `/* XXX n bytes hole *\/`, cache-line boundary markers, and a note on members that straddle a line.
 * Follows pahole's look (dwarves) so the output reads familiar, but is computed from BTF here.
 */
import type { LayoutReport, RowMember } from './layout-report.js';

const COMMENT_COL = 48;

/** `type name` in C declarator order: arrays after the name, function pointers around it. */
export function declarator(type: string, name: string, bitSize?: number): string {
  const bits = bitSize !== undefined ? `:${bitSize}` : '';
  if (type.includes('(*)')) return type.replace('(*)', `(*${name})`);
  const i = type.indexOf('[');
  const decl = i < 0 ? `${type} ${name}` : `${type.slice(0, i)} ${name}${type.slice(i)}`;
  return `${decl}${bits}`;
}

function pos(r: RowMember): string {
  const off = r.bitOffset !== undefined ? `${String(r.offset).padStart(5)}:${String(r.bitOffset - r.offset * 8).padStart(2)}` : String(r.offset).padStart(5);
  return `/* ${off} ${String(r.size).padStart(5)} */`;
}

function line(indent: number, text: string, comment: string): string {
  const left = `${'\t'.repeat(indent)}${text}`;
  const width = left.replace(/\t/g, '        ').length;
  return `${left}${' '.repeat(Math.max(1, COMMENT_COL - width))}${comment}`;
}

/**
 * Note on a member that straddles a line boundary: the lines it occupies, and when a better placement
 * would need fewer lines (a small member crossing a boundary), how many it needs.
 */
function straddleNote(r: RowMember): string {
  if (!r.straddles) return '';
  const range = `lines ${r.line}-${r.line + r.lines - 1}`;
  return r.lines > r.minLines ? `  /* straddles ${range} (needs ${r.minLines}) */` : `  /* ${range} */`;
}

export function renderPahole(r: LayoutReport): string {
  const out: string[] = [`${r.kind} ${r.name || '<anon>'} {`];
  for (const e of r.events) {
    switch (e.kind) {
      case 'member': {
        const leaf = e.row.member.name;
        out.push(line(e.row.depth + 1, `${declarator(e.row.type, leaf, e.row.bitSize)};`, pos(e.row)) + straddleNote(e.row));
        break;
      }
      case 'open':
        out.push(`${'\t'.repeat(e.depth + 1)}${e.record} {`);
        break;
      case 'close': {
        const leaf = e.row.member.name;
        out.push(line(e.row.depth + 1, `}${leaf ? ` ${leaf}` : ''};`, pos(e.row)) + straddleNote(e.row));
        break;
      }
      case 'hole': {
        const h = e.hole;
        const what = [h.size ? `${h.size} byte${h.size === 1 ? '' : 's'}` : '', h.bits ? `${h.bits} bit${h.bits === 1 ? '' : 's'}` : '']
          .filter(Boolean).join(' ');
        out.push(`${'\t'.repeat(e.depth + 1)}/* XXX ${what} ${h.kind === 'hole' ? 'hole, try to pack' : 'padding'} */`);
        break;
      }
      case 'boundary': {
        const ago = e.bytesAgo > 0 ? ` was ${e.bytesAgo} bytes ago` : '';
        out.push(`${'\t'.repeat(e.depth + 1)}/* --- cacheline ${e.line} boundary (${e.line * r.lineSize} bytes)${ago} --- */`);
        break;
      }
    }
  }
  out.push('');
  const top = r.members.filter((m) => m.depth === 0);
  const sumMembers = top.reduce((a, m) => a + (m.bitSize !== undefined ? 0 : m.size), 0);
  const topHoles = r.holes.filter((h) => h.kind === 'hole' && !h.after.includes('.'));
  out.push(`\t/* size: ${r.size}, cachelines: ${r.cachelines}, members: ${top.length} */`);
  out.push(`\t/* sum members: ${sumMembers}, holes: ${topHoles.length}, sum holes: ${topHoles.reduce((a, h) => a + h.size, 0)} */`);
  if (r.padding) out.push(`\t/* padding: ${r.padding} */`);
  const last = r.size % r.lineSize;
  if (last) out.push(`\t/* last cacheline: ${last} bytes */`);
  const straddling = r.members.filter((m) => m.lines > m.minLines && m.member.name !== '');
  if (straddling.length) {
    out.push(`\t/* touching more ${r.lineSize}-byte lines than their size needs: ${straddling.map((m) => m.name).join(', ')} */`);
  }
  out.push('};');
  return `${out.join('\n')}\n`;
}
