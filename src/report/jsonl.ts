/**
 * Streams the records of a kvm-trace JSONL file (one JSON object per line) with readline, so a file of any
 * size is read in constant memory. Bad input stops at the first bad line with a JsonlError naming
 * file:line: not JSON, not a record object, a truncated last line (no trailing newline and not parseable —
 * what a tracer killed mid-write leaves), or a file with no records at all.
 */
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { TraceRecord } from '../decode/records.js';

export class JsonlError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | null,
    message: string,
  ) {
    super(line === null ? `${file}: ${message}` : `${file}:${line}: ${message}`);
    this.name = 'JsonlError';
  }
}

const KNOWN_TYPES = new Set(['ioctl', 'kvm_run', 'fd', 'lost', 'copy', 'summary']);

/** Does the file end with a newline? (readline drops it, and a truncated last line is one without.) */
async function endsWithNewline(path: string, size: number): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(1);
    await fh.read(buf, 0, 1, size - 1);
    return buf[0] === 0x0a;
  } finally {
    await fh.close();
  }
}

function checkRecord(file: string, line: number, v: unknown): TraceRecord | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new JsonlError(file, line, `not a kvm-trace record (expected a JSON object with a "type", got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)?.slice(0, 40)})`);
  }
  const t = (v as { type?: unknown }).type;
  if (typeof t !== 'string') throw new JsonlError(file, line, 'not a kvm-trace record (no "type" field)');
  if (!KNOWN_TYPES.has(t)) return undefined;
  const r = v as Record<string, unknown>;
  const need = (field: string, kind: 'number' | 'string') => {
    if (typeof r[field] !== kind) throw new JsonlError(file, line, `${t} record without a ${kind} "${field}"`);
  };
  if (t === 'ioctl') {
    need('name', 'string');
    need('tid', 'number');
    need('pid', 'number');
    need('ret', 'number');
    need('latency_ns', 'number');
  } else if (t === 'lost') need('count', 'number');
  else if (t === 'kvm_run') need('pid', 'number');
  else if (t === 'fd') need('op', 'string');
  else if (t === 'copy') {
    need('addr', 'string');
    need('len', 'number');
    need('tid', 'number');
  }
  return v as TraceRecord;
}

export interface ReadStats {
  /** Lines read, blank ones included. */
  lines: number;
  records: number;
  /** Records of a type this version does not know (skipped, counted). */
  ignored: number;
}

/**
 * Yields every record of `path` in file order; fills `stats`. Throws JsonlError on the first bad line, and
 * when the file holds no records.
 */
export async function* readRecords(path: string, stats: ReadStats = { lines: 0, records: 0, ignored: 0 }): AsyncGenerator<TraceRecord> {
  let size: number;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw new JsonlError(path, null, 'is a directory, not a JSONL file');
    size = st.size;
  } catch (err) {
    if (err instanceof JsonlError) throw err;
    throw new JsonlError(path, null, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  // Line 1 is where the first record should have been.
  if (size === 0) throw new JsonlError(path, 1, 'empty file: no records (expected one JSON object per line)');
  const terminated = await endsWithNewline(path, size);
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let pendingError: JsonlError | undefined;
  try {
    for await (const text of rl) {
      stats.lines++;
      if (text.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        // Only the last line can lack its newline; readline has no way to say which line is last, so the
        // error is decided once the stream ends.
        pendingError = new JsonlError(path, stats.lines, `not JSON (${(err as Error).message.replace(/\s+/g, ' ')})`);
        const next = await peekDone(rl);
        if (next && !terminated) {
          throw new JsonlError(path, stats.lines, 'truncated record: the last line has no trailing newline and is not complete JSON');
        }
        throw pendingError;
      }
      const rec = checkRecord(path, stats.lines, value);
      if (!rec) {
        stats.ignored++;
        continue;
      }
      stats.records++;
      yield rec;
    }
  } finally {
    rl.close();
  }
  if (stats.records === 0) {
    throw new JsonlError(path, stats.lines, stats.ignored ? `no kvm-trace records in ${stats.lines} lines (only unknown record types)` : `no records in ${stats.lines} lines (only blank lines)`);
  }
}

/** True when readline has no further line: used to tell a truncated last line from garbage mid-file. */
async function peekDone(rl: ReturnType<typeof createInterface>): Promise<boolean> {
  const it = rl[Symbol.asyncIterator]();
  const next = await it.next();
  return next.done === true;
}
