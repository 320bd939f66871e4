/**
 * Records that could not be decoded: counted by cause, the first few kept with their type and a hex dump
 * of their bytes so a user can file them. A capture never stops for a bad record: the decoder skips it,
 * counts it here and goes on with the next one (issue 10). Causes:
 *   short        shorter than its struct, or than offsetof(data) + in_len + out_len for an ioctl record
 *   unknown_type a type this decoder does not know
 *   threw        a stage threw on it: the record decoder, an argument or exit decoder, or whatever the
 *                decoder's emit callback runs (analysis, ABI explainer, sinks' per-record formatting)
 */
import { EVENT_TYPE_NAMES, HDR } from '../bpf/event-layout.js';

export type DecodeErrorCause = 'short' | 'unknown_type' | 'threw';

export interface DecodeErrorSample {
  cause: DecodeErrorCause;
  /** Record type number (hdr.type), or -1 when the record is too short to hold one. */
  type: number;
  /** The type's name (kt_event_type without KT_EV_), or "unknown". */
  typeName: string;
  /** Record length in bytes. */
  len: number;
  /** What went wrong (the error's message for `threw`). */
  reason: string;
  /** The first bytes of the record as hex, 16 per line. */
  hex: string;
  /** What was thrown (cause `threw`), for a caller that wants its stack. */
  error?: unknown;
}

/** Bytes of a bad record kept in its sample (enough for the header and the fixed part of any record). */
export const SAMPLE_BYTES = 128;

/** `len` bytes at `off` of `dv` as hex, 16 bytes per line ("0000: 01 00 …"), the first `max` only. */
export function hexDump(dv: DataView, off: number, len: number, max = SAMPLE_BYTES): string {
  const n = Math.max(0, Math.min(len, max, dv.byteLength - off));
  const lines: string[] = [];
  for (let row = 0; row < n; row += 16) {
    const bytes: string[] = [];
    for (let i = row; i < Math.min(n, row + 16); i++) bytes.push(dv.getUint8(off + i).toString(16).padStart(2, '0'));
    lines.push(`${row.toString(16).padStart(4, '0')}: ${bytes.join(' ')}`);
  }
  if (len > n) lines.push(`… ${len - n} more bytes`);
  return lines.join('\n');
}

export class DecodeErrors {
  /** Every bad record, whatever the cause. */
  count = 0;
  readonly byCause: Record<DecodeErrorCause, number> = { short: 0, unknown_type: 0, threw: 0 };
  /** The first `keep` bad records. */
  readonly samples: DecodeErrorSample[] = [];

  /**
   * @param keep      samples kept (and passed to onSample)
   * @param onSample  told about each kept sample as it happens (the capture prints them)
   * @param onEvery   told about every bad record, kept or not (the fuzzer groups its findings with it)
   */
  constructor(
    private readonly keep = 5,
    private readonly onSample?: (s: DecodeErrorSample) => void,
    private readonly onEvery?: (s: DecodeErrorSample) => void,
  ) {}

  /** Count one bad record (`len` bytes at `off` of `dv`; `dv` undefined for a record built in user space). */
  add(cause: DecodeErrorCause, reason: string, dv: DataView | undefined, off: number, len: number, error?: unknown): void {
    this.count++;
    this.byCause[cause]++;
    const kept = this.samples.length < this.keep;
    if (!kept && !this.onEvery) return;
    const type = dv && len >= 2 && off + 2 <= dv.byteLength ? dv.getUint16(off + HDR.type, true) : -1;
    const s: DecodeErrorSample = {
      cause,
      type,
      typeName: EVENT_TYPE_NAMES[type] ?? 'unknown',
      len,
      reason,
      hex: dv ? hexDump(dv, off, len) : '',
    };
    if (error !== undefined) s.error = error;
    if (kept) {
      this.samples.push(s);
      this.onSample?.(s);
    }
    this.onEvery?.(s);
  }
}

/** One line per sample, then its hex dump indented: what the capture logs. */
export function formatDecodeError(s: DecodeErrorSample, index: number): string[] {
  const head = `decode error #${index}: ${s.cause} record, type ${s.type} (${s.typeName}), ${s.len} bytes: ${s.reason}`;
  return [head, ...s.hex.split('\n').filter((l) => l !== '').map((l) => `  ${l}`)];
}

/** A thrown value as one line. */
export function errorLine(e: unknown): string {
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return msg.split('\n')[0];
}
