/**
 * The fuzz target for raw records: every record goes through what a capture does with it — the decoder
 * (argument and exit decoders included), the flag analyzer, the ABI explainer, the exit-path analysis, the
 * summary, the JSONL writer and the live line formatter. A record on which any stage throws is a finding,
 * grouped by stage and where it was thrown. Independently of the decoder, an oracle says which records are
 * structurally bad (too short for their type or their declared data, or of no known type): each of those
 * must be counted as a decode error, and no other record may be. The JSONL writer is the sink's own
 * long-lived byte encoder (with its per-record caches): every line it writes must parse back to the same
 * value as JSON.stringify of the record.
 */
import { HDR, IOCTL, KT_EV_IOCTL, MIN_LEN } from '../../src/bpf/event-layout.js';
import type { Btf } from '../../src/btf/index.js';
import { btfTypeSource } from '../../src/btf/type-source.js';
import { explainFailure } from '../../src/analysis/abi/explain.js';
import { ExitPathAnalyzer } from '../../src/analysis/exit-path.js';
import { FlagAnalyzer } from '../../src/analysis/flags.js';
import { Decoder } from '../../src/decode/decoder.js';
import { hexDump, type DecodeErrorSample } from '../../src/decode/decode-errors.js';
import { formatRecord } from '../../src/decode/format.js';
import { JsonlEncoder } from '../../src/decode/json.js';
import type { TraceRecord } from '../../src/decode/records.js';
import { SummaryBuilder } from '../../src/decode/summary.js';
import { ioctlByName } from '../../src/kvm/abi/ioctl-table.js';

export interface Finding {
  /** Where: the stage and the top stack frame (or the oracle's rule). */
  key: string;
  message: string;
  count: number;
  /** The first record that showed it. */
  type: number;
  len: number;
  hex: string;
  stack?: string;
}

/** An error tagged with the stage it came from. */
class StageError extends Error {
  constructor(
    readonly stage: string,
    readonly inner: unknown,
  ) {
    super(`${stage}: ${inner instanceof Error ? inner.message : String(inner)}`);
  }
}

function stage<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new StageError(name, e);
  }
}

/** JSON text of a parsed value with object keys sorted: equal for equal values whatever the key order. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

/** Structurally bad, as the record contract (bpf/kvm_trace.h) defines it: the oracle. */
export function structurallyBad(dv: DataView, off: number, len: number): boolean {
  if (len < HDR.size) return true;
  const type = dv.getUint16(off + HDR.type, true);
  const min = MIN_LEN[type];
  if (min === undefined || len < min) return true;
  if (type !== KT_EV_IOCTL) return false;
  return len < IOCTL.data + dv.getUint16(off + IOCTL.in_len, true) + dv.getUint16(off + IOCTL.out_len, true);
}

/** Where in our code an error was thrown: its first stack frame inside src/ or scripts/. */
function origin(e: unknown): string {
  const stack = e instanceof Error ? (e.stack ?? '') : '';
  const frame = stack.split('\n').find((l) => /\/(src|scripts)\//.test(l) && !l.includes('fuzz/records'));
  return frame ? frame.trim().replace(/^at /, '').replace(/^.*\/((src|scripts)\/)/, '$1').replace(/\)$/, '') : 'unknown';
}

export interface RecordFuzzStats {
  records: number;
  /** Records the oracle calls structurally bad. */
  bad: number;
  /** The decoder's count of bad records (must equal `bad` when there are no findings). */
  decodeErrors: number;
  /** JSONL records produced. */
  outputs: number;
}

export class RecordFuzzTarget {
  readonly stats: RecordFuzzStats = { records: 0, bad: 0, decodeErrors: 0, outputs: 0 };
  readonly findings = new Map<string, Finding>();
  /** Distinct JSON lines of what was decoded: the corpus of the JSONL fuzz. */
  readonly jsonLines: string[] = [];
  readonly decoder: Decoder;
  private readonly seenLines = new Set<string>();
  private threwOnThis = false;
  /** The sink's encoder; what each record written through it should read back as, until its chunk comes. */
  private readonly encoder = new JsonlEncoder((bytes) => this.checkChunk(bytes), 1 << 16);
  private written: string[] = [];

  constructor(
    private readonly btf: Btf,
    private readonly maxJsonLines = 4000,
  ) {
    const analyzer = new FlagAnalyzer({ types: btfTypeSource(btf), lookup: ioctlByName, lineSize: 64 });
    const summary = new SummaryBuilder();
    const exitPath = new ExitPathAnalyzer();
    const emit = (r: TraceRecord): void => {
      this.stats.outputs++;
      if (r.type === 'ioctl' || r.type === 'copy') {
        const a = stage('flag analyzer', () => analyzer.analyze(r));
        if (a && a.flags.length > 0 && r.type === 'ioctl') r.flags = a.flags;
      }
      if (r.type === 'ioctl' && r.errno !== null) {
        const why = stage('ABI explainer', () => explainFailure(Number(r.cmd), r.errno!, btf, r.fd_kind === 'unknown' ? undefined : r.fd_kind));
        if (why) r.explain = why;
      }
      stage('exit path', () => exitPath.write(r));
      stage('summary', () => summary.write(r));
      // Expected first: the encoder may hand over the chunk holding this very line before write() returns.
      this.written.push(stage('JSON.stringify', () => canonical(JSON.parse(JSON.stringify(r)))));
      try {
        stage('JSONL writer', () => this.encoder.write(r));
      } catch (e) {
        this.written.pop(); // the encoder wrote nothing
        throw e;
      }
      stage('line formatter', () => formatRecord(r));
    };
    this.decoder = new Decoder({
      emit,
      btf,
      onThreadExit: (_pid, tid) => analyzer.forgetThread(tid),
      onProcessExit: (pid) => analyzer.forgetProcess(pid),
      onEveryDecodeError: (s) => this.onDecodeError(s),
    });
  }

  /** Run one raw record through the pipeline and check the oracle. */
  feed(rec: Uint8Array): void {
    const dv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    const bad = structurallyBad(dv, 0, rec.length);
    const before = this.decoder.errors.count;
    this.threwOnThis = false;
    this.stats.records++;
    if (bad) this.stats.bad++;
    try {
      this.decoder.decode(dv, 0, rec.length);
    } catch (e) {
      this.find(`crash: decode() threw (${origin(e)})`, e, dv, rec.length);
    }
    const counted = this.decoder.errors.count - before;
    this.stats.decodeErrors += counted;
    if (this.threwOnThis) return; // a finding already; the count includes it
    if (bad && counted !== 1) this.find('oracle: a structurally bad record was not counted', undefined, dv, rec.length);
    if (!bad && counted !== 0) this.find('oracle: a well-formed record was counted as bad', undefined, dv, rec.length);
  }

  /** Close the trace: the end-of-trace records go through the same stages. */
  finish(): void {
    this.decoder.finish();
    this.encoder.flush();
  }

  /** A chunk of the encoder's lines: each must be JSON equal to JSON.stringify of its record. */
  private checkChunk(bytes: Buffer): void {
    const lines = bytes.toString('utf8').split('\n');
    lines.pop(); // after the last newline
    const want = this.written;
    this.written = want.slice(lines.length);
    lines.forEach((line, i) => {
      let got: string;
      try {
        got = canonical(JSON.parse(line));
      } catch (e) {
        this.findLine('JSONL writer: a line that is not JSON', e, line);
        return;
      }
      if (got !== want[i]) this.findLine('JSONL writer: a line that reads back differently from JSON.stringify of its record', undefined, `${line}\nexpected ${want[i]}`);
      else if (this.jsonLines.length < this.maxJsonLines && !this.seenLines.has(line)) {
        this.seenLines.add(line);
        this.jsonLines.push(line);
      }
    });
  }

  private findLine(key: string, e: unknown, text: string): void {
    const f = this.findings.get(key);
    if (f) f.count++;
    else this.findings.set(key, { key, message: e instanceof Error ? e.message : key, count: 1, type: -1, len: text.length, hex: text.slice(0, 800) });
  }

  private onDecodeError(s: DecodeErrorSample): void {
    if (s.cause !== 'threw') return;
    this.threwOnThis = true;
    const e = s.error instanceof StageError ? s.error.inner : s.error;
    const where = s.error instanceof StageError ? s.error.stage : 'decoder';
    const key = `${where} (${origin(e)}): ${e instanceof Error ? e.message : String(e)}`.slice(0, 300);
    const f = this.findings.get(key);
    if (f) f.count++;
    else this.findings.set(key, { key, message: s.reason, count: 1, type: s.type, len: s.len, hex: s.hex, stack: e instanceof Error ? e.stack : undefined });
  }

  private find(key: string, e: unknown, dv: DataView, len: number): void {
    const f = this.findings.get(key);
    if (f) {
      f.count++;
      return;
    }
    this.findings.set(key, {
      key,
      message: e instanceof Error ? e.message : key,
      count: 1,
      type: len >= 2 ? dv.getUint16(0, true) : -1,
      len,
      hex: hexDump(dv, 0, len),
      stack: e instanceof Error ? e.stack : undefined,
    });
  }
}
