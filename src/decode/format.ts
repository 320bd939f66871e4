/**
 * The live, strace-like line per record that `kvm-trace attach` prints while it runs:
 *
 *   [4242] KVM_SET_REGS(fd=12 vcpu=0, {rip=0x1000, rflags=0x2}) = 0 <3.2µs>
 *   [4242] KVM_RUN(fd=12 vcpu=0) = 0 IO out port=0x3f8 size=1 data=0x48 <8.1µs>
 *   [4242] KVM_CHECK_EXTENSION(fd=3 kvm, {cap=KVM_CAP_USER_MEMORY, value=3}) = 1 <900ns>
 *   [4242] KVM_GET_REGS(fd=7 vm=0, …) = -1 ENOTTY <1.1µs>
 *
 * Compact on purpose: argument members that are zero are left out, at most `maxFields` are shown, nested
 * values are abbreviated, integers ≥ 256 are shown in hex. The JSONL output has everything.
 */
import type { Writable } from 'node:stream';
import type { RecordSink } from './sink.js';
import type { ExitInfo, IoctlRecord, TraceRecord } from './records.js';

export interface FormatOptions {
  /** Top-level argument members shown before "…" (default 6). */
  maxFields?: number;
}

/** "850ns", "3.2µs", "12.5µs", "1.25ms", "2.01s": three significant digits. */
export function formatDuration(ns: number): string {
  const p3 = (v: number): string => String(Number(v.toPrecision(3)));
  if (ns < 1000) return `${Math.round(ns)}ns`;
  if (ns < 999_500) return `${p3(ns / 1e3)}µs`;
  if (ns < 999_500_000) return `${p3(ns / 1e6)}ms`;
  return `${p3(ns / 1e9)}s`;
}

function isZero(v: unknown): boolean {
  return v === 0 || v === '0x0' || v === false || (typeof v === 'string' && /^0+$/.test(v));
}

function value(v: unknown, depth: number): string {
  if (typeof v === 'number') return v >= 256 ? `0x${v.toString(16)}` : String(v);
  if (typeof v === 'string') return v.length > 24 ? `${v.slice(0, 20)}…` : v;
  if (typeof v === 'boolean') return v ? '1' : '0';
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    if (depth > 0) return `[${v.length}]`;
    const shown = v.slice(0, 3).map((x) => value(x, depth + 1));
    return `[${shown.join(', ')}${v.length > 3 ? `, …${v.length} total` : ''}]`;
  }
  if (v && typeof v === 'object') return depth > 0 ? '{…}' : fields(v as Record<string, unknown>, 3, depth + 1);
  return String(v);
}

function fields(o: Record<string, unknown>, max: number, depth: number): string {
  const parts: string[] = [];
  let more = false;
  for (const [k, v] of Object.entries(o)) {
    if (k.startsWith('_') || isZero(v)) continue;
    if (parts.length >= max) {
      more = true;
      break;
    }
    parts.push(`${k}=${value(v, depth)}`);
  }
  if (o._truncated) parts.push('…truncated');
  return `{${parts.join(', ')}${more ? ', …' : ''}}`;
}

function fdLabel(r: { fd: number; fd_kind: string; vm: number | null; vcpu: number | null }): string {
  if (r.fd_kind === 'system') return `fd=${r.fd} kvm`;
  if (r.fd_kind === 'vcpu') return `fd=${r.fd} vcpu=${r.vcpu ?? '?'}`;
  if (r.fd_kind === 'vm') return `fd=${r.fd} vm=${r.vm ?? '?'}`;
  if (r.fd_kind === 'device') return `fd=${r.fd} device`;
  return `fd=${r.fd}`;
}

/** "IO out port=0x3f8 size=1 data=0x48", "MMIO write 0xfee000b0 len=4 data=0x0", "HLT". */
export function formatExit(e: ExitInfo): string {
  // IO and MMIO get their one-line form when their details were captured; without them (a snapshot cut
  // short) they print like any other exit.
  const kind = e.reason === 'IO' && typeof e.port === 'number' ? 'IO' : e.reason === 'MMIO' && e.phys_addr !== undefined ? 'MMIO' : '';
  switch (kind) {
    case 'IO': {
      const data = e.data !== undefined ? ` data=${typeof e.data === 'number' ? `0x${e.data.toString(16)}` : e.data}` : '';
      const count = e.count !== 1 ? ` count=${e.count}` : '';
      return `IO ${e.direction} port=0x${(e.port as number).toString(16)} size=${e.size}${count}${data}`;
    }
    case 'MMIO': {
      const data = e.data !== undefined ? ` data=${typeof e.data === 'number' ? `0x${e.data.toString(16)}` : e.data}` : '';
      return `MMIO ${e.is_write ? 'write' : 'read'} ${e.phys_addr} len=${e.len}${data}`;
    }
    default: {
      const { reason, code: _code, ...rest } = e;
      const detail = Object.keys(rest).length > 0 ? ` ${fields(rest, 4, 1)}` : '';
      return `${reason}${detail}`;
    }
  }
}

/** One line for an ioctl record. */
export function formatIoctl(r: IoctlRecord, opts: FormatOptions = {}): string {
  const args = r.args ? `, ${fields(r.args, opts.maxFields ?? 6, 0)}` : '';
  const ret = r.ret < 0 ? `-1 ${r.errno ?? ''}`.trimEnd() : String(r.ret);
  const exit = r.exit ? ` ${formatExit(r.exit)}` : '';
  const lat = r.no_enter ? '<?>' : `<${formatDuration(r.latency_ns)}>`;
  return `[${r.tid}] ${r.name}(${fdLabel(r)}${args}) = ${ret}${exit} ${lat}`;
}

/** One line for any record, or null for records with no live line (copy, summary). */
export function formatRecord(r: TraceRecord, opts?: FormatOptions): string | null {
  switch (r.type) {
    case 'ioctl':
      return formatIoctl(r, opts);
    case 'fd': {
      const what = r.op === 'leak' ? 'still open at exit' : r.op === 'open' ? 'opened' : `closed = ${r.ret ?? 0}`;
      return `[${r.tid}] +++ ${r.fd_kind} ${fdLabel(r)} ${what}`;
    }
    case 'kvm_run':
      return `[${r.pid}] +++ kvm_run vcpu=${r.vcpu} fd=${r.fd}: kernel ${r.kernel_addr ?? '?'} user ${r.user_addr ?? '?'}${r.mmap_size !== null ? ` (${r.mmap_size} bytes mapped)` : ''}`;
    case 'lost':
      return `!!! ${r.count} records lost`;
    default:
      return null;
  }
}

/** RecordSink printing formatRecord lines to a stream, batched per event-loop turn. */
export class LineSink implements RecordSink {
  private lines: string[] = [];
  private scheduled = false;

  constructor(
    private readonly out: Writable,
    private readonly opts: FormatOptions = {},
  ) {}

  write(record: TraceRecord): void {
    const line = formatRecord(record, this.opts);
    if (line === null) return;
    this.lines.push(line);
    if (this.lines.length >= 256) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    if (this.lines.length === 0) return;
    this.out.write(this.lines.join('\n') + '\n');
    this.lines = [];
  }

  async close(): Promise<void> {
    this.flush();
  }
}
