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
import { shapeProblem } from './record-shape.js';

export class JsonlError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | null,
    message: string,
    /** The line is not JSON at all (as opposed to JSON that is not a record). */
    readonly notJson = false,
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

/**
 * One line of a capture file as a record: undefined for a blank line or a record type this version does not
 * know (skipped); a JsonlError naming file:line for anything else that is not a record.
 */
export function parseRecordLine(file: string, line: number, text: string): TraceRecord | undefined {
  if (text.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new JsonlError(file, line, `not JSON (${(err as Error).message.replace(/\s+/g, ' ')})`, true);
  }
  return checkRecord(file, line, value);
}

function checkRecord(file: string, line: number, v: unknown): TraceRecord | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new JsonlError(file, line, `not a kvm-trace record (expected a JSON object with a "type", got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)?.slice(0, 40)})`);
  }
  const t = (v as { type?: unknown }).type;
  if (typeof t !== 'string') throw new JsonlError(file, line, 'not a kvm-trace record (no "type" field)');
  if (!KNOWN_TYPES.has(t)) return undefined;
  const problem = shapeProblem(t, v as Record<string, unknown>);
  if (problem) throw new JsonlError(file, line, problem);
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
  try {
    for await (const text of rl) {
      stats.lines++;
      if (text.trim() === '') continue;
      let rec: TraceRecord | undefined;
      try {
        rec = parseRecordLine(path, stats.lines, text);
      } catch (err) {
        // Only the last line can lack its newline; readline has no way to say which line is last, so a
        // line that is not JSON is looked at again once the stream says whether more follows.
        if (err instanceof JsonlError && err.notJson && !terminated && (await peekDone(rl))) {
          throw new JsonlError(path, stats.lines, 'truncated record: the last line has no trailing newline and is not complete JSON');
        }
        throw err;
      }
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
