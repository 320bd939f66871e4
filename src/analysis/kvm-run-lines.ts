/**
 * Which cache lines of a vCPU's `struct kvm_run` each exit touches. For an exit reason, the kernel fills the
 * header fields (exit_reason, ready_for_interrupt_injection, if_flag, flags, cr8, apic_base — written by
 * post_kvm_run_save on x86) and the exit union's member for that reason (io, mmio, hypercall, internal,
 * system_event, …), and the VMM reads the same fields; a PIO exit also moves size × count bytes of data at
 * kvm_run + io.data_offset. Offsets and sizes come from the kernel's BTF of struct kvm_run — the only
 * names in this file are the exit-reason → union-member pairs the uapi header documents.
 */
import { hexAddr, parseAddr } from '../cdata/values.js';
import { lineSpan, DEFAULT_LINE_SIZE } from './cacheline.js';
import { findMember, type MemberLayout, type StructLayout } from '../btf/layout.js';
import { EXIT_UNION_MEMBER } from '../kvm/abi/exit-union.js';

/** Header fields the kernel writes on every exit (x86 post_kvm_run_save plus exit_reason). */
export const EXIT_HEADER_FIELDS = ['exit_reason', 'ready_for_interrupt_injection', 'if_flag', 'flags', 'cr8', 'apic_base'] as const;

export { EXIT_UNION_MEMBER };

/** PIO data lives in the vCPU mapping's PIO page (page 1 on x86); allow a generous 16 pages. */
const PIO_DATA_END = 16 * 4096;

export interface RunField {
  /** "exit_reason", "io.port", "hypercall.args", "internal.data[0..3]", "io data". */
  name: string;
  /** Byte offset from the start of struct kvm_run. */
  offset: number;
  size: number;
  firstLine: number;
  lastLine: number;
  straddles: boolean;
  part: 'header' | 'exit' | 'data';
}

export interface LineAddresses {
  base: string;
  /** Address of each touched line, in the order of ExitLines.lines. */
  lines: string[];
}

export interface ExitLines {
  reason: string;
  /** The exit union's member for this reason; null when the reason carries no details (HLT, SHUTDOWN, …). */
  member: string | null;
  lineSize: number;
  fields: RunField[];
  /** Distinct line indices touched, relative to the start of kvm_run, ascending. */
  lines: number[];
  straddling: RunField[];
  kernel?: LineAddresses;
  user?: LineAddresses;
}

export interface KvmRunLinesOptions {
  lineSize?: number;
  /** The exit's details from the KVM_RUN record (io.data_offset, size, count; internal.ndata …). */
  exit?: Record<string, unknown>;
  kernelAddr?: string | null;
  userAddr?: string | null;
}

function field(name: string, offset: number, size: number, part: RunField['part'], L: number): RunField {
  const s = lineSpan(BigInt(offset), size, L);
  return { name, offset, size, firstLine: Number(s.first), lastLine: Number(s.last), straddles: s.lines > 1, part };
}

/**
 * The leaf fields of an exit-union member: structs are walked into, arrays and nested unions are one field
 * each (a union's bytes are written by whichever member applies, so its whole extent counts). A `data`
 * array next to an `ndata` count is trimmed to the count when the exit says it.
 */
function leaves(m: MemberLayout, prefix: string, base: number, L: number, exit: Record<string, unknown> | undefined): RunField[] {
  const name = m.name ? (prefix ? `${prefix}.${m.name}` : m.name) : prefix;
  const off = base + m.offset;
  if (m.kind === 'struct' && m.nested) return m.nested.members.flatMap((c) => leaves(c, name, off, L, exit));
  if (m.kind === 'union' && m.nested) {
    const names = m.nested.members.map((c) => c.name || '<anon>').join('|');
    const label = `${name ? `${name}.` : ''}{${names}}`;
    // system_event: union { flags; data[16] } — with ndata known, only data[0..ndata) (at least the first
    // word, which the legacy `flags` aliases) is written.
    const data = m.nested.members.find((c) => c.name === 'data' && c.kind === 'array' && c.elemSize);
    if (data && typeof exit?.ndata === 'number') {
      const n = Math.max(1, Math.min(exit.ndata, data.elemCount ?? exit.ndata));
      return [field(`${label}[0..${n - 1}]`, off, n * data.elemSize!, 'exit', L)];
    }
    return [field(label, off, m.size, 'exit', L)];
  }
  if (m.kind === 'array' && m.name === 'data' && typeof exit?.ndata === 'number' && m.elemSize) {
    const n = Math.max(0, Math.min(exit.ndata, m.elemCount ?? exit.ndata));
    return n > 0 ? [field(`${name}[0..${n - 1}]`, off, n * m.elemSize, 'exit', L)] : [];
  }
  return m.size > 0 ? [field(name, off, m.size, 'exit', L)] : [];
}

/** The address of each relative line of a kvm_run at `base` ("0x…"), or undefined without a base. */
export function lineAddresses(base: string | null | undefined, lines: number[], L: number): LineAddresses | undefined {
  const b = parseAddr(base ?? undefined);
  if (b === undefined) return undefined;
  // kvm_run is page-aligned in the kernel (alloc_page) and in the VMM (mmap offset 0), so relative line i is
  // the line at base + i * L; a base that were not line-aligned is still handled by aligning each address.
  const lb = BigInt(L);
  return { base: hexAddr(b), lines: lines.map((i) => hexAddr(((b + BigInt(i * L)) / lb) * lb)) };
}

/** The exit union of struct kvm_run: its anonymous union member, found as the one holding `io`. */
export function exitUnion(run: StructLayout): { layout: StructLayout; offset: number } | undefined {
  for (const m of run.members) {
    if (m.name === '' && m.kind === 'union' && m.nested?.members.some((x) => x.name === 'io')) return { layout: m.nested, offset: m.offset };
  }
  return undefined;
}

/** Lines of struct kvm_run an exit of `reason` touches, with the kernel and user addresses of those lines. */
export function kvmRunLines(reason: string, run: StructLayout, opts: KvmRunLinesOptions = {}): ExitLines {
  const L = opts.lineSize ?? DEFAULT_LINE_SIZE;
  const fields: RunField[] = [];
  for (const h of EXIT_HEADER_FIELDS) {
    const hit = findMember(run, h);
    if (hit) fields.push(field(h, hit.offset, hit.member.size, 'header', L));
  }
  let member: string | null = null;
  const u = exitUnion(run);
  const want = EXIT_UNION_MEMBER[reason];
  const m = want && u ? u.layout.members.find((x) => x.name === want) : undefined;
  if (m && u) {
    member = m.name;
    fields.push(...leaves(m, '', u.offset, L, opts.exit));
  }
  if (reason === 'IO' && opts.exit) {
    const off = typeof opts.exit.data_offset === 'number' ? opts.exit.data_offset : Number(parseAddr(opts.exit.data_offset) ?? NaN);
    const len = Number(opts.exit.size) * Number(opts.exit.count);
    // KVM puts PIO data in the vCPU's mapping, one page after kvm_run (KVM_PIO_PAGE_OFFSET): an extent
    // that does not fit in the first PIO_DATA_END bytes is not a real exit's (a garbled record's) — skipped.
    if (Number.isInteger(off) && Number.isInteger(len) && off >= 0 && len > 0 && off + len <= PIO_DATA_END) {
      fields.push(field('io data', off, len, 'data', L));
    }
  }
  const lineSet = new Set<number>();
  for (const f of fields) for (let i = f.firstLine; i <= f.lastLine; i++) lineSet.add(i);
  const lines = [...lineSet].sort((a, b) => a - b);
  return {
    reason,
    member,
    lineSize: L,
    fields,
    lines,
    straddling: fields.filter((f) => f.straddles),
    kernel: lineAddresses(opts.kernelAddr, lines, L),
    user: lineAddresses(opts.userAddr, lines, L),
  };
}

export interface RunMapBlock {
  name: string;
  offset: number;
  size: number;
}

/** The top-level members of struct kvm_run (the exit union and sync-regs union as one block each), for drawing. */
export function kvmRunBlocks(run: StructLayout): RunMapBlock[] {
  return run.members.map((m) => {
    let name = m.name;
    if (!name && m.nested?.members.some((x) => x.name === 'io')) name = 'exit union';
    else if (!name) name = m.nested?.members.map((x) => x.name).join('|') ?? '<anon>';
    return { name, offset: m.offset, size: m.size };
  });
}
